"""The fault script does what tests/fakegcp/faults.py documents, seen on the wire."""

from __future__ import annotations

import requests

from tests.fakegcp.fake import FakeGCP


def get_bucket(fake: FakeGCP) -> requests.Response:
    return requests.get(f"{fake.url}/storage/v1/b/b", timeout=10)


def test_n_failures_then_success(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    fault = fake_gcp.faults.fail("storage", times=2, status=503)
    codes = [get_bucket(fake_gcp).status_code for _ in range(3)]
    assert codes == [503, 503, 200] and fault.hits == 2
    body = fake_gcp.faults.fail("storage") and get_bucket(fake_gcp).json()
    assert body["error"]["code"] == 503 and body["error"]["status"] == "UNAVAILABLE"


def test_faults_match_api_method_and_path(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    fake_gcp.faults.fail("aiplatform", times=None)
    fake_gcp.faults.fail("storage", method="POST", times=None)
    fake_gcp.faults.fail("storage", path="/b/other", times=None)
    assert get_bucket(fake_gcp).status_code == 200
    fake_gcp.faults.clear()


def test_rate_limit_and_permission_shapes(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    fake_gcp.faults.rate_limit("storage", times=1)
    error = get_bucket(fake_gcp).json()["error"]
    assert error["code"] == 429 and error["errors"][0]["reason"] == "rateLimitExceeded"
    fake_gcp.faults.deny("storage", "storage.buckets.get")
    for _ in range(2):  # until cleared
        error = get_bucket(fake_gcp).json()["error"]
        assert error["status"] == "PERMISSION_DENIED" and "storage.buckets.get" in error["message"]
    fake_gcp.faults.clear()
    assert get_bucket(fake_gcp).status_code == 200


def test_failure_after_the_call_took_effect(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    fake_gcp.faults.fail("storage", method="POST", after=True)
    url = f"{fake_gcp.url}/upload/storage/v1/b/b/o?uploadType=media&name=k&ifGenerationMatch=0"
    assert requests.post(url, data=b"x", timeout=10).status_code == 503
    assert fake_gcp.gcs.get_object("b", "k").data == b"x"  # it landed anyway
    assert requests.post(url, data=b"y", timeout=10).status_code == 412


def test_gcs_enforces_every_precondition(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    obj = fake_gcp.gcs.put("b", "k", b"1")
    base = f"{fake_gcp.url}/storage/v1/b/b/o/k"
    gen, meta = obj.generation, obj.metageneration
    assert requests.get(f"{base}?ifGenerationMatch={gen + 1}", timeout=10).status_code == 412
    assert requests.get(f"{base}?ifGenerationNotMatch={gen}", timeout=10).status_code == 304
    patch = {"metadata": {"a": "b"}}
    url = f"{base}?ifMetagenerationMatch={meta + 1}"
    assert requests.patch(url, json=patch, timeout=10).status_code == 412
    url = f"{base}?ifMetagenerationMatch={meta}"
    assert requests.patch(url, json=patch, timeout=10).json()["metageneration"] == str(meta + 1)
    url = f"{fake_gcp.url}/upload/storage/v1/b/b/o?uploadType=media&name=k"
    assert (
        requests.post(f"{url}&ifGenerationNotMatch={gen}", data=b"2", timeout=10).status_code == 412
    )
    assert requests.post(f"{url}&ifGenerationNotMatch=1", data=b"2", timeout=10).ok
    assert requests.post(f"{url}&ifGenerationMatch={gen}", data=b"3", timeout=10).status_code == 412
    assert requests.patch(base, json={"bogus": 1}, timeout=10).status_code == 400


def test_a_share_of_one_endpoints_requests(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    other = fake_gcp.add_endpoint("other")
    fake_gcp.faults.seed(7)
    fault = fake_gcp.faults.fail("storage", times=None, share=0.25, via="other")
    main = [get_bucket(fake_gcp).status_code for _ in range(40)]
    codes = [requests.get(f"{other}/storage/v1/b/b", timeout=10).status_code for _ in range(200)]
    assert set(main) == {200}
    assert 20 <= codes.count(503) <= 80 and codes.count(503) == fault.hits
    assert set(codes) == {200, 503}
