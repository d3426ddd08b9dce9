"""What the management commands and task answers print: sentences a person reads."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from staging.management.commands.createtoken import Command as CreateToken

pytestmark = pytest.mark.django_db


def test_createtoken_lists_the_roles_by_name_in_its_help_and_its_refusal():
    parser = CreateToken().create_parser("manage.py", "createtoken")
    assert "{admin,collection-admin,data-admin,data-user,service-user}" in parser.format_help()
    with pytest.raises(CommandError) as refused:
        call_command("createtoken", "carol", "--role", "owner")
    message = str(refused.value)
    assert "'data-user'" in message
    assert "<Role." not in message


def test_scan_prints_a_sentence_with_one_file_in_the_singular(store):
    (Path(store.archive_root) / "a.txt").write_bytes(b"hello")
    out = StringIO()
    call_command("scan", stdout=out)
    assert out.getvalue().strip() == (
        "store primary: 1 file seen (1 new, 0 changed, 0 unchanged), 0 vanished, 1 MD5 computed"
    )


def test_scan_prints_files_in_the_plural(store):
    for name in ("a.txt", "b.txt"):
        (Path(store.archive_root) / name).write_bytes(b"hello")
    out = StringIO()
    call_command("scan", stdout=out)
    assert "2 files seen (2 new" in out.getvalue()


def test_a_durastore_stage_of_one_file_says_file(client_for, archive_files):
    archive_files({"a.txt": b"alpha"})
    response = client_for().generic(
        "POST", "/durastore/task/stage", "a.txt", content_type="text/plain"
    )
    assert response.status_code == 200
    assert response.content.decode().startswith("Request to stage 1 file was accepted as job ")
