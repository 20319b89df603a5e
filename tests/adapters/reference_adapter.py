#!/usr/bin/env python3
"""A reference out-of-process channel adapter for crabpot (docs/adapter-protocol.md, v1).

Python 3 standard library only. It plays a chat platform whose "platform" is this process's
stdin and stdout, which makes it both an example to copy and the adapter the end-to-end test
(tests/tests/adapters.rs) drives:

- stdin: one JSON object per line from "the platform". An object with an "answer" key is an
  answer to an agent's question (sent as an `answer` line); anything else is an inbound event
  (`platform_id`, `platform_message_id`, `sender`, `text`, ...), sent as an `inbound` line.
  Events are sent again after a reconnect until the host acks them (the host stores a
  platform message id once, so that is safe).
- stdout: one JSON object per line logging what happened: `connected`, `welcome`,
  `received` (every line from the host, as is), `ack`, `posted` (a message went to "the
  platform"), `duplicate` (a delivery seen before, answered without posting it twice),
  `disconnected`, `refused`.

It connects to the host's socket, says hello with its token, answers every request with a
`result`, reconnects with back-off when the connection drops (the host restarted, or closed a
stalled connection), and exits 2 when its hello is refused (a bad token does not get better).

Deliveries are deduplicated on (message id, piece), the idempotency key: a delivery the host
sends again (its result was lost, or `resend` after a host crash) is answered with the
platform id of the first post. With --state FILE that record survives a restart of the
adapter; a real adapter should keep it durable, or pass the key to the platform.

--hold-deliveries never answers a `deliver` (it logs it and waits), which lets a test kill
the adapter in the middle of a delivery.
"""

import argparse
import json
import os
import queue
import signal
import socket
import sys
import threading
import time

PROTOCOL_VERSION = 1


class Log:
    """JSON lines on stdout, one writer at a time."""

    def __init__(self):
        self.lock = threading.Lock()

    def __call__(self, event, **fields):
        fields["event"] = event
        with self.lock:
            sys.stdout.write(json.dumps(fields) + "\n")
            sys.stdout.flush()


class Posted:
    """What went to "the platform", by idempotency key, optionally kept in a file."""

    def __init__(self, path):
        self.path = path
        self.by_key = {}
        self.counter = 0
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            self.by_key = saved.get("by_key", {})
            self.counter = saved.get("counter", 0)

    def get(self, key):
        return self.by_key.get(key)

    def post(self, key):
        self.counter += 1
        platform_id = "ref-%d" % self.counter
        self.by_key[key] = platform_id
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"by_key": self.by_key, "counter": self.counter}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        return platform_id


class Adapter:
    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.posted = Posted(args.state)
        self.capabilities = json.loads(args.capabilities)
        self.sock = None
        self.write_lock = threading.Lock()
        # Inbound lines not acked yet, by request id: sent again after a reconnect.
        self.unacked = {}
        self.unacked_lock = threading.Lock()
        self.next_request = 0
        self.platform = queue.Queue()

    # -- the platform side (stdin) -------------------------------------------------------

    def read_platform(self):
        for raw in sys.stdin:
            raw = raw.strip()
            if not raw:
                continue
            try:
                item = json.loads(raw)
            except ValueError as error:
                self.log("platform_error", error=str(error))
                continue
            with self.unacked_lock:
                self.next_request += 1
                request_id = "a%d" % self.next_request
                if "answer" in item:
                    line = {"type": "answer", "id": request_id, "answer": item["answer"]}
                else:
                    line = {"type": "inbound", "id": request_id, "event": item}
                self.unacked[request_id] = line
            self.send(line)

    # -- the host side (the socket) ------------------------------------------------------

    def send(self, line):
        """Writes one line; False when not connected (it goes after the next hello)."""
        data = (json.dumps(line) + "\n").encode("utf-8")
        with self.write_lock:
            if self.sock is None:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def result(self, request_id, **fields):
        fields.update({"type": "result", "id": request_id})
        fields.setdefault("ok", True)
        self.send(fields)

    def handle(self, line):
        kind = line.get("type")
        request_id = line.get("id")
        if kind == "ack":
            with self.unacked_lock:
                self.unacked.pop(request_id, None)
            self.log("ack", ack=line)
        elif kind == "error":
            self.log("host_error", message=line.get("message"))
        elif kind == "deliver":
            message = line["message"]
            key = "%s:%d" % (message["id"], message.get("piece", 0))
            if self.args.hold_deliveries:
                self.log("holding", key=key)
                return
            known = self.posted.get(key)
            if known is not None:
                self.log("duplicate", key=key, platform_message_id=known)
                self.result(request_id, platform_message_id=known)
                return
            platform_id = self.posted.post(key)
            self.log("posted", key=key, platform_message_id=platform_id,
                     to=line["to"], text=message.get("text", ""))
            self.result(request_id, platform_message_id=platform_id)
        elif kind == "open_dm":
            self.result(request_id, address={
                "channel_type": self.args.channel_type,
                "platform_id": "dm-" + line["user_id"],
            })
        elif kind in ("edit", "react", "delete", "typing", "draft", "turn_complete"):
            self.result(request_id)
        elif request_id is not None:
            # A request of a newer protocol: say so rather than leave it hanging.
            self.result(request_id, ok=False, unsupported=True,
                        error="unknown request type %r" % kind)

    def session(self):
        """One connection, from hello to its end. Returns False when the hello was refused."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.args.socket)
        reader = sock.makefile("rb")
        hello = {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "token": self.args.token,
            "channel_type": self.args.channel_type,
            "capabilities": self.capabilities,
        }
        sock.sendall((json.dumps(hello) + "\n").encode("utf-8"))
        first = reader.readline()
        if not first:
            raise ConnectionError("the host closed the connection before its welcome")
        welcome = json.loads(first)
        if welcome.get("type") != "welcome":
            self.log("refused", message=welcome.get("message"))
            sock.close()
            return False
        self.log("welcome", adapter=welcome.get("adapter"), capabilities=welcome.get("capabilities"))
        with self.write_lock:
            self.sock = sock
        with self.unacked_lock:
            waiting = list(self.unacked.values())
        for line in waiting:
            self.send(line)
        try:
            for raw in reader:
                line = json.loads(raw)
                self.log("received", line=line)
                self.handle(line)
        finally:
            with self.write_lock:
                self.sock = None
            sock.close()
        return True

    def run(self):
        threading.Thread(target=self.read_platform, daemon=True).start()
        pause = 0.1
        while True:
            try:
                self.log("connecting", socket=self.args.socket)
                if not self.session():
                    return 2
                self.log("disconnected", reason="the host closed the connection")
                pause = 0.1
            except (OSError, ValueError, ConnectionError) as error:
                self.log("disconnected", reason=str(error))
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="the host's data/adapters.sock")
    parser.add_argument("--token", default=os.environ.get("CRABPOT_ADAPTER_TOKEN"),
                        help="from `crabpot adapters add` (default: $CRABPOT_ADAPTER_TOKEN)")
    parser.add_argument("--channel-type", required=True)
    parser.add_argument("--capabilities", default='{"threads": true, "markup": "markdown"}',
                        help="the capabilities to declare, as JSON")
    parser.add_argument("--state", help="keep what was posted here, across restarts")
    parser.add_argument("--hold-deliveries", action="store_true",
                        help="never answer a deliver (for tests that kill the adapter)")
    args = parser.parse_args()
    if not args.token:
        parser.error("a token is needed: --token or $CRABPOT_ADAPTER_TOKEN")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sys.exit(Adapter(args, Log()).run())


if __name__ == "__main__":
    main()
