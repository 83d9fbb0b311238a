"""Chain names hash exactly like kube-proxy's (values seen on real clusters)."""
import base64
import hashlib

import pytest

from emulator.kubeproxy import names

pytestmark = pytest.mark.unit


def test_known_value_from_kube_proxy_tests():
    assert names.port_proto_hash("ns4/svc4:p80", "tcp") == "4SW47YFZTEDKD3PK"
    assert names.svc_chain("ns4/svc4:p80", "TCP") == "KUBE-SVC-4SW47YFZTEDKD3PK"


@pytest.mark.parametrize("port_name, proto, chain", [
    ("default/kubernetes:https", "tcp", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
    ("kube-system/kube-dns:dns", "udp", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
    ("kube-system/kube-dns:dns-tcp", "tcp", "KUBE-SVC-ERIFXISQEP7F7OF4"),
    ("default/nginx", "tcp", "KUBE-SVC-2CMXP7HKUVJN7L6M"),     # unnamed port: no ":"
])
def test_chain_names_seen_on_real_nodes(port_name, proto, chain):
    assert names.svc_chain(port_name, proto) == chain


def test_unnamed_port_drops_the_colon():
    assert names.port_name_string("default", "nginx") == "default/nginx"
    assert names.port_name_string("default", "nginx", "http") == "default/nginx:http"


def test_all_chain_kinds_share_the_suffix_and_fit_28_characters():
    spn = "ns/a-very-long-service-name-indeed:a-long-port-name"
    suffix = names.port_proto_hash(spn, "udp")
    for make in (names.svc_chain, names.svl_chain, names.ext_chain, names.fw_chain):
        chain = make(spn, "udp")
        assert chain.endswith(suffix) and len(chain) <= 28
    assert names.is_service_chain(names.fw_chain(spn, "udp"))
    assert not names.is_service_chain("KUBE-SERVICES")


def test_sep_hash_appends_endpoint_to_name_and_protocol():
    reference = base64.b32encode(hashlib.sha256(b"ns1/svc1:p80tcp10.180.0.1:80").digest()).decode()[:16]
    assert names.sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-" + reference


def test_fast_base32_matches_the_standard_encoding():
    for i in range(2000):
        text = f"ns{i}/svc:p{i * 7}udp10.0.{i % 256}.1:{i}"
        want = base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]
        assert names._hash16(text) == want
