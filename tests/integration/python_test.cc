// /usr/bin/python3 running an allocation-heavy script with memward
// preloaded: JSON, sqlite3, a TLS handshake through ssl memory BIOs, libc's
// malloc family called through ctypes, and threads. The script prints a
// checksum of its results, compared against a run without LD_PRELOAD.
#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "harness/process.h"
#include "harness/procfs.h"

namespace memward::integration {
namespace {

using std::chrono::seconds;

constexpr const char* kPython = "/usr/bin/python3";

// Prints "provider.NAME=PATH" for the file that the process-wide symbol NAME
// of the malloc family resolves into, "mapped=PATH" for each library named
// in argv[1], and "checksum=SHA256" over everything it computed. Any wrong
// result raises, so the process exits non-zero.
constexpr const char* kWorkloadScript = R"python(
import ctypes
import hashlib
import json
import os
import random
import sqlite3
import ssl
import sys
import threading

digest = hashlib.sha256()


def record(label, value):
    digest.update(f"{label}={value}\n".encode())


def file_mapped_at(address):
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end and len(fields) >= 6:
                return fields[5]
    return "unknown"


def mapped_files_named(name):
    paths = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and os.path.basename(fields[5]) == name and fields[5] not in paths:
                paths.append(fields[5])
    return paths


def json_round_trip(seed, count):
    rng = random.Random(seed)
    records = []
    for index in range(count):
        records.append({
            "id": index,
            "name": "item-%d-%s" % (index, "x" * rng.randrange(0, 200)),
            "tags": [rng.randrange(1000) for _ in range(rng.randrange(0, 20))],
            "nested": {"depth": [{"value": rng.random()} for _ in range(rng.randrange(0, 5))]},
            "blob": "%x" % rng.getrandbits(rng.randrange(8, 4096)),
        })
    text = json.dumps(records, sort_keys=True)
    if json.loads(text) != records:
        raise AssertionError("JSON round trip changed the data")
    return hashlib.sha256(text.encode()).hexdigest(), len(text)


def sqlite_workload():
    rng = random.Random(7)
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, bucket INTEGER, payload BLOB)")
    rows = [(index, rng.randrange(100), rng.randbytes(rng.randrange(1, 3000)))
            for index in range(15000)]
    connection.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)
    connection.execute("CREATE INDEX items_bucket ON items (bucket)")
    connection.commit()
    totals = connection.execute(
        "SELECT bucket, COUNT(*), SUM(LENGTH(payload)) FROM items GROUP BY bucket ORDER BY bucket"
    ).fetchall()
    expected = {}
    for _, bucket, payload in rows:
        count, size = expected.get(bucket, (0, 0))
        expected[bucket] = (count + 1, size + len(payload))
    if [(bucket, *expected[bucket]) for bucket in sorted(expected)] != totals:
        raise AssertionError("sqlite aggregates differ from the inserted rows")
    connection.execute("DELETE FROM items WHERE bucket % 3 = 0")
    connection.commit()
    connection.execute("VACUUM")
    remaining = connection.execute("SELECT COUNT(*), SUM(LENGTH(payload)) FROM items").fetchone()
    connection.close()
    return totals, remaining


def tls_workload(certificate, key):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate, key)
    client_context = ssl.create_default_context(cafile=certificate)
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(client_in, client_out, server_hostname="localhost")
    server = server_context.wrap_bio(server_in, server_out, server_side=True)

    def pump():
        server_in.write(client_out.read())
        client_in.write(server_out.read())

    for _ in range(20):
        done = True
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                done = False
        pump()
        if done:
            break
    else:
        raise AssertionError("the TLS handshake did not finish")

    rng = random.Random(11)
    received = bytearray()
    for _ in range(64):
        chunk = rng.randbytes(rng.randrange(1, 32768))
        client.write(chunk)
        pump()
        while True:
            try:
                received += server.read(65536)
            except ssl.SSLWantReadError:
                break
        server.write(bytes(reversed(chunk)))
        pump()
        echoed = bytearray()
        while len(echoed) < len(chunk):
            echoed += client.read(65536)
        if bytes(echoed) != bytes(reversed(chunk)):
            raise AssertionError("TLS echo differs")
    return client.version(), len(received), hashlib.sha256(received).hexdigest()


def libc_workload(seed, operations):
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.calloc.restype = ctypes.c_void_p
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.realloc.restype = ctypes.c_void_p
    libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.malloc_usable_size.restype = ctypes.c_size_t
    libc.malloc_usable_size.argtypes = [ctypes.c_void_p]

    rng = random.Random(seed)
    live = {}
    summary = hashlib.sha256()
    for step in range(operations):
        slot = rng.randrange(256)
        kind = rng.randrange(10)
        if kind < 5:
            size = rng.randrange(1, 256)
        elif kind < 9:
            size = rng.randrange(256, 65536)
        else:
            size = rng.randrange(65536, 2 << 20)
        fill = step % 251
        if slot in live:
            pointer, old_size, old_fill = live.pop(slot)
            action = rng.randrange(3)
            if action == 0:
                libc.free(pointer)
                continue
            if action == 1:
                moved = libc.realloc(pointer, size)
                if not moved:
                    raise MemoryError("realloc(%d) returned NULL" % size)
                kept_size = min(old_size, size)
                if ctypes.string_at(moved, kept_size) != bytes([old_fill]) * kept_size:
                    raise AssertionError("realloc lost data")
                ctypes.memset(moved, fill, size)
                live[slot] = (moved, size, fill)
                summary.update(b"r%d" % size)
                continue
            libc.free(pointer)
        if rng.randrange(2):
            pointer = libc.calloc(1, size)
            if pointer and ctypes.string_at(pointer, size) != bytes(size):
                raise AssertionError("calloc memory is not zero")
        else:
            pointer = libc.malloc(size)
        if not pointer:
            raise MemoryError("allocation of %d bytes returned NULL" % size)
        if libc.malloc_usable_size(pointer) < size:
            raise AssertionError("malloc_usable_size is below the request")
        ctypes.memset(pointer, fill, size)
        live[slot] = (pointer, size, fill)
        summary.update(b"a%d" % size)
    for pointer, size, fill in live.values():
        if ctypes.string_at(pointer, size) != bytes([fill]) * size:
            raise AssertionError("a live block changed")
        libc.free(pointer)
    return summary.hexdigest()


def thread_workload(index, results):
    local = []
    for round_number in range(2):
        local.append(json_round_trip(index * 100 + round_number, 1000))
    local.append(libc_workload(1000 + index, 1500))
    results[index] = local


def main():
    library_name, certificate, key = sys.argv[1], sys.argv[2], sys.argv[3]
    libc = ctypes.CDLL(None)
    # Debian's python3.11 is not position-independent and takes the address
    # of malloc and free, so those two names resolve to its own PLT entries.
    # The global lookup that binds them also binds these:
    for name in ("calloc", "realloc", "malloc_usable_size"):
        address = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
        print("provider.%s=%s" % (name, file_mapped_at(address)))
    for path in mapped_files_named(library_name):
        print("mapped=" + path)

    record("json", json_round_trip(1, 8000))
    record("sqlite", sqlite_workload())
    record("tls", tls_workload(certificate, key))
    record("libc", libc_workload(3, 5000))

    results = [None] * 4
    threads = [threading.Thread(target=thread_workload, args=(index, results)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record("threads", results)

    print("checksum=" + digest.hexdigest())


main()
)python";

struct PythonRun {
  RunResult result;
  std::map<std::string, std::vector<std::string>> fields;
};

PythonRun run_python(const TempDir& dir, bool preload, const std::string& python_malloc) {
  ProcessOptions options;
  // -s leaves out the user site directory, and -B writes no .pyc files.
  options.argv = {kPython,
                  "-s",
                  "-B",
                  (dir / "workload.py").string(),
                  preload_library_name(),
                  (dir / "cert.pem").string(),
                  (dir / "key.pem").string()};
  options.env = {{"PYTHONHASHSEED", "0"}, {"PYTHONMALLOC", python_malloc}};
  options.unset_env = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"};
  if (preload) options.ld_preload = preload_path();

  PythonRun run;
  run.result = run_program(std::move(options), seconds(50));
  std::istringstream lines(run.result.stdout_text);
  std::string line;
  while (std::getline(lines, line)) {
    std::size_t equals = line.find('=');
    if (equals != std::string::npos) {
      run.fields[line.substr(0, equals)].push_back(line.substr(equals + 1));
    }
  }
  return run;
}

// The certificate for the TLS handshake: a fresh EC key and self-signed
// certificate for "localhost", made with the openssl command.
void make_certificate(const TempDir& dir) {
  ProcessOptions options;
  options.argv = {"openssl", "req",   "-x509", "-newkey", "ec",
                  "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes",   "-days", "1",     "-subj",   "/CN=localhost",
                  "-addext",  "subjectAltName=DNS:localhost",
                  "-keyout",  (dir / "key.pem").string(),
                  "-out",     (dir / "cert.pem").string()};
  RunResult result = run_program(options, seconds(20));
  ASSERT_TRUE(result.exited_with(0)) << result.description;
}

// "pymalloc" is CPython's default small-object allocator on top of malloc,
// and "malloc" sends every Python object allocation to malloc.
class PythonWorkload : public testing::TestWithParam<std::string> {};

TEST_P(PythonWorkload, MatchesControlRun) {
  TempDir dir("memward-python");
  write_text_file(dir / "workload.py", kWorkloadScript);
  make_certificate(dir);
  if (HasFatalFailure()) return;

  PythonRun control = run_python(dir, false, GetParam());
  ASSERT_TRUE(control.result.exited_with(0))
      << "the script failed without LD_PRELOAD\n" << control.result.description;
  ASSERT_EQ(control.fields["checksum"].size(), 1u) << control.result.description;

  PythonRun run = run_python(dir, true, GetParam());
  ASSERT_TRUE(run.result.exited_with(0)) << run.result.description;
  ASSERT_EQ(run.fields["mapped"].size(), 1u)
      << preload_library_name() << " is not mapped\n" << run.result.description;
  for (const char* name : {"calloc", "realloc", "malloc_usable_size"}) {
    const std::vector<std::string>& provider = run.fields[std::string("provider.") + name];
    ASSERT_EQ(provider.size(), 1u) << run.result.description;
    EXPECT_EQ(std::filesystem::path(provider[0]).filename(), preload_library_name())
        << name << " resolves into " << provider[0] << ", not into the preloaded library";
  }
  EXPECT_EQ(run.fields["checksum"], control.fields["checksum"]) << run.result.description;
  EXPECT_EQ(memward_messages(run.result.stderr_text), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Allocators, PythonWorkload, testing::Values("pymalloc", "malloc"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

// Forks 60 times while three threads call malloc and free through ctypes,
// which releases the GIL, so some forks happen while another thread is
// inside the allocator. Each child allocates, starts a thread and exits 0.
// A child that does not exit within 10 s (an allocator lock left held
// across fork) is killed and reported. Prints "forks=N" on success.
constexpr const char* kForkScript = R"python(
import ctypes
import json
import os
import random
import sys
import threading
import time

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
stop = threading.Event()


def churn(seed):
    rng = random.Random(seed)
    while not stop.is_set():
        pointers = [libc.malloc(rng.randrange(1, 1 << 20)) for _ in range(64)]
        for pointer in pointers:
            libc.free(pointer)


def child_work():
    data = json.dumps([{"index": index, "text": "x" * index} for index in range(2000)])
    pointer = libc.malloc(4 << 20)
    libc.free(pointer)
    results = []
    worker = threading.Thread(target=lambda: results.append(len(json.loads(data))))
    worker.start()
    worker.join()
    return 0 if results == [2000] else 3


threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(3)]
for thread in threads:
    thread.start()

forks = 60
for fork_number in range(forks):
    pid = os.fork()
    if pid == 0:
        os._exit(child_work())
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            print("child %d of fork %d did not exit within 10 s" % (pid, fork_number), flush=True)
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            stop.set()
            os._exit(4)
        time.sleep(0.002)
    if os.waitstatus_to_exitcode(status) != 0:
        print("child of fork %d failed with wait status %d" % (fork_number, status), flush=True)
        stop.set()
        os._exit(5)

stop.set()
for thread in threads:
    thread.join()
print("forks=%d" % forks)
)python";

TEST(Python, ForkWhileThreadsAllocate) {
  TempDir dir("memward-python-fork");
  write_text_file(dir / "fork.py", kForkScript);
  ProcessOptions options;
  options.argv = {kPython, "-s", "-B", (dir / "fork.py").string()};
  options.unset_env = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONMALLOC"};
  options.ld_preload = preload_path();
  Process python(options);
  EXPECT_TRUE(wait_for_library(python, preload_library_name(), seconds(10)))
      << preload_library_name() << " was not seen mapped into python3";

  std::optional<int> status = python.wait_for_exit(seconds(50));
  ASSERT_TRUE(status.has_value()) << "the script did not finish within 50 s\n"
                                  << python.describe();
  EXPECT_EQ(describe_wait_status(*status), "exited with code 0") << python.describe();
  EXPECT_EQ(python.stdout_text(), "forks=60\n") << python.describe();
  EXPECT_EQ(memward_messages(python.stderr_text()), std::vector<std::string>{});
}

}  // namespace
}  // namespace memward::integration
