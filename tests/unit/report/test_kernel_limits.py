"""A run that filled the kernel's one ARP table says so; the counter is read from /proc's layout."""
import pytest

from emulator.kernel import hoststat
from emulator.report import kernel_limits

pytestmark = pytest.mark.unit

ARP_STAT = """entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls
00000002 0000d20f 0000e070 00000005   0002d686 0000bdfa 000001a5   00000000         00000000         000011af         000046ae       00000000            0000465e
00000002 0000cd19 0000beb6 00000003   0002c6ed 0000b84a 00000215   00000000         00000000         00000000         000044f6       00000000            000044a7
"""


def test_table_fulls_are_summed_over_the_cpus(tmp_path):
    path = tmp_path / "arp_cache"
    path.write_text(ARP_STAT)
    assert hoststat.neigh_table_fulls(str(path)) == 0x465e + 0x44a7


def test_an_unreadable_or_unknown_layout_counts_nothing(tmp_path):
    assert hoststat.neigh_table_fulls(str(tmp_path / "absent")) == 0
    path = tmp_path / "arp_cache"
    path.write_text("entries allocs\n00000001 00000002\n")
    assert hoststat.neigh_table_fulls(str(path)) == 0


def test_a_run_that_filled_the_table_is_told_how_often_and_what_to_do():
    assert kernel_limits.summary(100, 100, 1024) is None
    rec = kernel_limits.summary(100, 142, 1024)
    assert rec == {"arp_table_full": 42, "gc_thresh3": 1024}
    text = kernel_limits.warning(rec)
    assert "full 42 time(s)" in text and "gc_thresh3 = 1024" in text and "fewer nodes" in text
