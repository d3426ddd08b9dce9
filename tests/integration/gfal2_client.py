"""Drive gfal2's Python bindings for the end-to-end tape test.

Debian's python3-gfal2 is built for /usr/bin/python3, not for the project's virtualenv, so the
test runs this file with /usr/bin/python3 and reads one JSON document from its stdout:

    /usr/bin/python3 gfal2_client.py OPERATION TOKEN URL [URL ...]

OPERATION is bring_online, bring_online_poll, abort_bring_online or release; TOKEN is the
request id ("-" for none). Credentials come from the environment (BEARER_TOKEN), as for the
gfal command-line tools. The answer: {"token": ..., "errors": [null | {"code", "message"}]}.
"""

import json
import sys

import gfal2  # only under /usr/bin/python3


def describe(errors):
    return [None if e is None else {"code": e.code, "message": e.message} for e in errors]


def main(operation: str, token: str, urls: list[str]) -> dict:
    context = gfal2.creat_context()
    token = "" if token == "-" else token
    if operation == "bring_online":
        # pin lifetime 3600 s, request timeout 600 s, asynchronous: answers with the request id
        errors, token = context.bring_online(urls, 3600, 600, True)
    elif operation == "bring_online_poll":
        errors = context.bring_online_poll(urls, token)
    elif operation == "abort_bring_online":
        errors = context.abort_bring_online(urls, token)
    elif operation == "release":
        errors = context.release(urls, token)
    else:
        raise SystemExit(f"unknown operation {operation!r}")
    return {"token": token, "errors": describe(errors)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
