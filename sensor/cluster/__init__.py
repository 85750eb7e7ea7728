"""Archives on a Dask cluster: one task per capture file, stitched into the single-process run."""
