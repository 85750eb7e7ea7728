"""What running as a service needs: stop signals and worker lifecycle."""
