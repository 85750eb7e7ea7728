"""--check-interface's receive-path line: a device's interrupts, the cores they reach and RPS,
read from sysfs and procfs trees laid out as the kernel lays them out."""

from __future__ import annotations

import os
from pathlib import Path

from sensor.service.ifcheck import InterfaceReport, _receive_line, receive_cores


def _tree(root: Path, *, irqs: dict[int, tuple[str | None, str]], rps: list[str],
          virtio: bool = False, msi: bool = True) -> tuple[Path, Path]:  # fmt: skip
    """sys and proc roots for an interface eth9: its device (a PCI function, or a virtio
    device under one), that device's MSI interrupts, each interrupt's effective and configured
    affinity (None: no effective_affinity_list, as older kernels), and its rx queues' rps_cpus."""
    sys_root, proc_root = root / "sys", root / "proc"
    pci = sys_root / "devices" / "pci0000:00" / "0000:00:03.0"
    device = pci / "virtio2" if virtio else pci
    device.mkdir(parents=True)
    if msi:
        (pci / "msi_irqs").mkdir()
        for irq in irqs:
            (pci / "msi_irqs" / str(irq)).write_text("msix\n")
    for irq, (effective, configured) in irqs.items():
        d = proc_root / "irq" / str(irq)
        d.mkdir(parents=True)
        (d / "smp_affinity_list").write_text(configured + "\n")
        if effective is not None:
            (d / "effective_affinity_list").write_text(effective + "\n")
    net = sys_root / "class" / "net" / "eth9"
    net.mkdir(parents=True)
    (net / "device").symlink_to(device)
    for i, mask in enumerate(rps):
        q = net / "queues" / f"rx-{i}"
        q.mkdir(parents=True)
        (q / "rps_cpus").write_text(mask + "\n")
    return sys_root, proc_root


def test_a_nic_reports_its_interrupts_and_where_they_are_delivered(tmp_path: Path) -> None:
    sys_root, proc_root = _tree(tmp_path, irqs={40: ("2", "0-7"), 41: (None, "3"),
                                                42: ("2", "0-7")}, rps=["0", "0"])  # fmt: skip
    report = InterfaceReport("eth9", exists=True)
    receive_cores("eth9", report, sys_root, proc_root)
    assert report.irqs == (40, 41, 42)
    assert report.irq_cores == {2, 3}  # effective where the kernel says, else configured
    assert report.rps_cores == frozenset()
    line = _receive_line(report)
    assert line.startswith("eth9: interrupts 40-42 delivered to cores 2-3")


def test_a_virtio_nic_takes_its_pci_functions_interrupts_and_rps(tmp_path: Path) -> None:
    sys_root, proc_root = _tree(tmp_path, irqs={37: ("0", "0-1"), 38: ("1", "0-1")},
                                rps=["c", "00000000,00000001"], virtio=True)  # fmt: skip
    report = InterfaceReport("eth9", exists=True)
    receive_cores("eth9", report, sys_root, proc_root)
    assert report.irqs == (37, 38) and report.irq_cores == {0, 1}
    assert report.rps_cores == {0, 2, 3}  # hex masks, comma-grouped as the kernel writes them
    assert "receive packet steering to cores 0,2-3" in _receive_line(report)


def test_the_advice_depends_on_whether_a_core_is_left(tmp_path: Path) -> None:
    every = frozenset(os.sched_getaffinity(0))
    report = InterfaceReport("eth9", exists=True, irqs=(40,), irq_cores=every)
    assert "every core; to keep capture cores apart, move them" in _receive_line(report)
    report.irq_cores = frozenset({max(every) + 1})  # a core this process may not use
    assert _receive_line(report).endswith("on a busy link, list other cores in [live] cpus")


def test_no_device_is_a_virtual_interface_and_no_msi_a_legacy_line(tmp_path: Path) -> None:
    report = InterfaceReport("veth9", exists=True)
    receive_cores("veth9", report, tmp_path / "sys", tmp_path / "proc")  # nothing there
    assert report.irqs is None
    assert _receive_line(report) == ("veth9: no device interrupts (a virtual interface: its "
                                     "receive path runs on the sender's core)")  # fmt: skip
    sys_root, proc_root = _tree(tmp_path / "legacy", irqs={}, rps=[], msi=False)
    legacy = InterfaceReport("eth9", exists=True)
    receive_cores("eth9", legacy, sys_root, proc_root)
    assert legacy.irqs == ()
    assert "no per-device interrupts listed" in _receive_line(legacy)
