"""A webhook receiver for stagingsvc, standard library only: registers itself for every event
of your jobs, then verifies each delivery's Standard Webhooks signature and prints the event.

    STAGINGSVC=http://127.0.0.1:8000 STAGINGSVC_TOKEN=... MY_URL=https://hooks.example.org/ \
        python docs/webhook_receiver.py

MY_URL is where the service reaches this receiver (port 8080 here, usually behind a proxy).
"""

import base64
import hashlib
import hmac
import json
import os
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

SERVICE = os.environ.get("STAGINGSVC", "http://127.0.0.1:8000")
TOKEN = os.environ.get("STAGINGSVC_TOKEN", "")
MY_URL = os.environ.get("MY_URL", "https://hooks.example.org/staging")


def register(url: str) -> str:
    """Register ``url`` for every event of my jobs; returns the secret (shown only now)."""
    request = urllib.request.Request(
        f"{SERVICE}/api/v1/webhooks/",
        data=json.dumps({"url": url}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)["secret"]


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """True when one of the v1 signatures is ours over id.timestamp.body, and it is recent."""
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False  # a replay of an old delivery
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(signature.removeprefix("v1,"), expected)
        for signature in headers["webhook-signature"].split()
        if signature.startswith("v1,")
    )


if __name__ == "__main__":
    SECRET = register(MY_URL)

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if not verify(SECRET, self.headers, body):
                self.send_response(401)
            else:
                event = json.loads(body)
                print(event["type"], event["data"]["jobId"], event["data"]["status"])
                self.send_response(204)  # any 2xx: delivered; else tried again with backoff
            self.end_headers()

    HTTPServer(("", 8080), Receiver).serve_forever()
