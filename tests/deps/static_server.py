#!/usr/bin/env python3
"""A static file server for the egress tests (tests/src/https_server.rs).

Serves one folder on 127.0.0.1 (port 0: the kernel picks one), over TLS when --cert and --key
are given, and prints the port on the first line of stdout once it accepts connections. A bare
git repository in the folder, after `git update-server-info`, is clonable over git's dumb HTTP
protocol. Runs until killed.
"""

import argparse
import functools
import http.server
import ssl
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    # HTTP/1.0 answers close the connection after each response, so a tunnel through the
    # proxy ends when the exchange does.
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):
        sys.stderr.write("static_server: " + (format % args) + "\n")


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
