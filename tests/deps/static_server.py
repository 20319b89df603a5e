#!/usr/bin/env python3
"""A static file server for the egress tests (tests/src/https_server.rs).

Serves one folder on 127.0.0.1 (port 0: the kernel picks one), over TLS when --cert and --key
are given, and prints the port on the first line of stdout once it accepts connections. Runs
until killed.

A bare git repository in the folder is served both ways: git's dumb HTTP protocol (static files,
after `git update-server-info`) and its smart HTTP protocol, by handing `info/refs?service=...`,
`git-upload-pack` and `git-receive-pack` to `git http-backend` as a CGI program. Pushing works
when the repository sets `http.receivepack` (tests/src/https_server.rs `bare_repo` does).
"""

import argparse
import functools
import http.server
import os
import ssl
import subprocess
import sys
import urllib.parse

SMART_SUFFIXES = ("/info/refs", "/git-upload-pack", "/git-receive-pack")


class Handler(http.server.SimpleHTTPRequestHandler):
    # HTTP/1.0 answers close the connection after each response, so a tunnel through the
    # proxy ends when the exchange does.
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):
        sys.stderr.write("static_server: " + (format % args) + "\n")

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path.endswith("/info/refs") and "service=" in query:
            return self.git_backend("GET", path, query)
        return super().do_GET()

    def do_POST(self):
        path, _, query = self.path.partition("?")
        if path.endswith(SMART_SUFFIXES):
            return self.git_backend("POST", path, query)
        self.send_error(405)

    def git_backend(self, method, path, query):
        """Runs `git http-backend` for one request (CGI/1.1) and relays its answer."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = dict(os.environ)
        env.update(
            {
                "GIT_PROJECT_ROOT": self.directory,
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": method,
                "PATH_INFO": urllib.parse.unquote(path),
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
            }
        )
        encoding = self.headers.get("Content-Encoding")
        if encoding:
            env["HTTP_CONTENT_ENCODING"] = encoding
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True
        )
        if done.stderr:
            sys.stderr.write("static_server: git http-backend: " + done.stderr.decode(errors="replace"))
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    handler = functools.partial(Handler, directory=args.dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if args.cert and args.key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
