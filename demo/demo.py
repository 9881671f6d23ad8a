# A NixOS-style testScript, run unchanged by this driver against two tiny Debian guests.
start_all()

with subtest("both machines answer"):
    server.wait_until_succeeds("test -d /tmp/shared")
    print(server.succeed("uname -a"))
    assert client.succeed("hostname").strip() == "client"

with subtest("commands fail and time out cleanly"):
    client.fail("false")
    status, output = client.execute("echo -n partial; sleep 60", timeout=2)
    assert status == 124, status

with subtest("files travel through the shared directory"):
    server.succeed("echo hello from the server > /tmp/greeting")
    server.copy_from_vm("/tmp/greeting")

server.shutdown()
client.shutdown()
