"""GET /api/v1/files/: what a catalogue entry shows."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_file_listing_shows_every_checksum_the_catalogue_keeps(client_for, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    type(file).objects.filter(pk=file.pk).update(adler32="05c801f0")
    (entry,) = client_for().get("/api/v1/files/").json()["results"]
    assert {"md5", "sha256", "adler32"} <= set(entry)
    assert entry["adler32"] == "05c801f0"
