"""Rebinds a stale socket's path between memwardctl clean's connection
test and its unlink, as a new process given the same pid does, and prints
what clean did.

usage: memwardctl_clean_race.py MEMWARDCTL DIRECTORY
Prints "outcome=<removed|young|None> live_socket_kept=<yes|no>". The new
socket may get the old one's inode number, so the check before the unlink
must tell them apart by more than the inode.
"""
import importlib.machinery
import importlib.util
import os
import socket
import sys
import time


def load_memwardctl(path):
    loader = importlib.machinery.SourceFileLoader("memwardctl", path)
    spec = importlib.util.spec_from_loader("memwardctl", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main():
    ctl = load_memwardctl(sys.argv[1])
    path = os.path.join(sys.argv[2], "424242.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))

    servers = []
    test_connection = ctl.refuses_connections

    def test_then_rebind(target):
        refused = test_connection(target)
        os.unlink(target)
        server = socket.socket(socket.AF_UNIX)
        server.bind(target)
        server.listen(1)
        servers.append(server)
        return refused

    ctl.refuses_connections = test_then_rebind
    outcome = ctl.remove_if_stale(path)
    live_socket_exists = os.path.exists(path)
    print("outcome=%s live_socket_kept=%s" % (outcome, "yes" if live_socket_exists else "no"))
    for server in servers:
        server.close()
    if live_socket_exists:
        os.unlink(path)


if __name__ == "__main__":
    main()
