"""Where kubemu looks for a running Open vSwitch."""
import pytest

from emulator.kernel import ovs

pytestmark = pytest.mark.unit


def test_standard_dirs_by_default(monkeypatch):
    monkeypatch.delenv(ovs.SYSTEM_OVS_ENV, raising=False)
    assert ovs.system_rundirs() == ("/run/openvswitch", "/var/run/openvswitch")


def test_only_the_chosen_dir_or_none(monkeypatch, tmp_path):
    monkeypatch.setenv(ovs.SYSTEM_OVS_ENV, str(tmp_path))
    assert ovs.system_rundirs() == (str(tmp_path),)
    assert ovs.system_db_socket() is None          # nothing answers there
    monkeypatch.setenv(ovs.SYSTEM_OVS_ENV, "off")
    assert ovs.system_rundirs() == () and ovs.system_db_socket() is None
