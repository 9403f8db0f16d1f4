"""The protobuf reader with literals: a body kubectl sent, and what it must never do."""

from __future__ import annotations

import random

import pytest

from services.sandbox.protobuf import ProtobufError, decode

# `kubectl create deployment web --image=nginx:1.27 --replicas=3 --port=80 -n default`,
# as kubectl v1.37 sent it to the emulator (captured with -v=9).
DEPLOYMENT = bytes.fromhex(
    "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412c4010a260a0377656212001a07646566"
    "61756c7422002a003200380042005a0a0a036170701203776562128b010803120c0a0a0a0361707012037765"
    "621a710a1c0a0012001a0022002a003200380042005a0a0a036170701203776562125112330a056e67696e78"
    "120a6e67696e783a312e32372a00320a0a001000185022002a0042006a007200800100880100900100a20100"
    "1a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c080010001800"
    "2000280038001a002200"
)


def test_a_deployment_kubectl_sent_reads_as_its_json() -> None:
    assert decode(DEPLOYMENT) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }


def test_a_damaged_body_is_refused_never_a_crash() -> None:
    rng = random.Random(8)
    refused = 0
    for _ in range(3000):
        body = bytearray(DEPLOYMENT)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(4, len(body))
            choice = rng.random()
            if choice < 0.5:
                body[at] = rng.randrange(256)
            elif choice < 0.75:
                del body[at]
            else:
                body.insert(at, rng.randrange(256))
        try:
            decode(bytes(body))
        except ProtobufError:
            refused += 1
    assert refused > 1000  # most damage is noticed; what is not still decodes to JSON values


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"k8s\x00\x0a", "truncated varint"),
        (b"k8s\x00\x0b", "wire type 3"),
        (b"k8s\x00\x12\x05ab", "runs past the end"),
    ],
)
def test_malformed_wire_format_names_the_problem(body: bytes, says: str) -> None:
    with pytest.raises(ProtobufError, match=says) as raised:
        decode(body)
    assert not raised.value.unsupported
