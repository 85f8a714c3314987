"""The probes of scripts/probe, run against a started daemon (see that script for the set-up it expects)."""
import base64
import email
import json
import os
import re
import socket
import subprocess
import time

BIN, WORK, PORT = os.environ["PROBE_BIN"], os.environ["PROBE_WORK"], int(os.environ["PROBE_PORT"])
CUSTOMERS = int(os.environ["PROBE_CUSTOMERS"])
CONFIG = f"{WORK}/coupond.json"
results = []


def probe(name, expected, got, ok):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}: expected {expected}; got {got}", flush=True)


def coupond(*args, env=None):
    run = subprocess.run([f"{BIN}/coupond", *args], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})})
    return run.returncode, run.stdout + run.stderr


def psql(sql):
    return subprocess.run(["psql", "-Atq", "-c", sql], capture_output=True, text=True, check=True).stdout.strip()


def http(method, path, body=b"", headers=None, timeout=5):
    """Status and seconds of one request over a fresh connection."""
    start = time.time()
    with socket.create_connection(("127.0.0.1", PORT), timeout=timeout) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, time.time() - start, data


def smtp_lines():
    with open(f"{WORK}/smtp.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# --- Configuration and arguments ------------------------------------------------------------------------------------
def bad_config(name, text):
    path = f"{WORK}/{name}.json"
    with open(path, "w") as f:
        f.write(text)
    return coupond("run", "--config", path)


base = json.load(open(CONFIG))
huge = json.loads(json.dumps(base))
huge["email"]["timeout_seconds"] = 1e300
code, out = bad_config("huge", json.dumps(huge))
probe("config: email.timeout_seconds 1e300", "exit 78 naming it", f"exit {code}", code == 78 and "timeout_seconds" in out)
text = json.dumps(base)[:-1] + ', "engine": {"batch_size": 5}}'
code, out = bad_config("twice", text)
probe("config: a section set twice", "exit 78 naming it", f"exit {code}", code == 78 and "set more than once" in out)
for url in ["postgresql://coupond:Pr0beSecret@db.example:notaport/x",
            "postgresql://coupond:Pr0beSecret@db.example/x?sslmode=bogus",
            "postgresql://coupond:Pr0beSecret@[db.example/x"]:
    code, out = coupond("run", "--config", CONFIG, "--database-url", url)
    probe(f"argument: --database-url {url.replace('Pr0beSecret', '***')}", "exit 78, password never shown",
          f"exit {code}, password {'shown' if 'Pr0beSecret' in out else 'hidden'}",
          code == 78 and "Pr0beSecret" not in out)
for at in ["2026-12-01 10:00+25:00", "2026-12-01 10:00-25:00", "2026-13-45 10:00"]:
    code, out = coupond("schedule", "--config", CONFIG, "--shop", "1", "--group", "1", "--coupon", "1",
                        "--channels", "email", "--at", at)
    probe(f"argument: --at {at}", "exit 64", f"exit {code}", code == 64)

# --- A send under attack --------------------------------------------------------------------------------------------
at = psql("SELECT to_char(date_trunc('hour', now() AT TIME ZONE 'Asia/Kolkata') + interval '3 hours', "
          "'YYYY-MM-DD HH24:MI')")
code, out = coupond("schedule", "--config", CONFIG, "--shop", "1", "--group", "1", "--coupon", "1",
                    "--channels", "email,sms", "--at", at, "--json")
send = json.loads(out)["send_id"]
psql(f"INSERT INTO coupond.clock_override (shift) SELECT (SELECT scheduled_at FROM coupond.sends WHERE id = {send}) - now()")

idle = []
for i in range(1000):
    try:
        idle.append(socket.create_connection(("127.0.0.1", PORT), timeout=5))
    except OSError:
        break
slow = []
for i in range(100):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n")
    slow.append(s)
worst = 0.0
for _ in range(5):
    status, seconds, _ = http("GET", "/healthz")
    worst = max(worst, seconds if status == 200 else 99)
    time.sleep(0.2)
probe("1,000 idle and 100 slow-header connections during a send", "/healthz 200 within 1 s",
      f"slowest {worst:.3f} s", worst < 1)

with socket.create_connection(("127.0.0.1", PORT), timeout=5) as s:
    s.sendall(b"POST /claims HTTP/1.1\r\nHost: probe\r\nContent-Length: 10485760\r\n\r\n")
    answer, closed = b"", False
    try:
        for _ in range(160):
            s.sendall(b"a" * 65536)
    except OSError:
        pass
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            answer += chunk
    except OSError:
        closed = True
probe("unauthenticated 10 MB POST /claims", "401 (or a reset), connection closed",
      f"{answer[:12]!r}, {'closed' if closed else 'open'}", closed and (answer == b"" or b" 401 " in answer[:16]))

deadline = time.time() + 300
while time.time() < deadline and psql(f"SELECT status FROM coupond.sends WHERE id = {send}") not in ("done", "failed"):
    time.sleep(1)
row = psql(f"SELECT status, recipient_count, sent_count, failed_count FROM coupond.group_activity WHERE send_id = {send}")
probe("the send under attack", f"done with every one of {CUSTOMERS} customers", row,
      row.startswith("done|") and row.split("|")[1] == str(CUSTOMERS)
      and int(row.split("|")[2]) + int(row.split("|")[3]) == CUSTOMERS)
for s in idle + slow:
    s.close()

lines = [entry["line"] for entry in smtp_lines()]
rcpt = [line for line in lines if line.startswith("RCPT TO:")]
emailed = int(psql(f"SELECT count(*) FROM coupond.send_recipients WHERE send_id = {send} AND email_status = 'sent'"))
probe("every emailed customer once over SMTP", f"{emailed} customer RCPTs, all distinct",
      f"{len([r for r in rcpt if 'owner@' not in r])} RCPTs, {len(set(rcpt))} distinct",
      len([r for r in rcpt if "owner@" not in r]) == emailed and len(set(rcpt)) == len(rcpt))
injected = [line for line in lines if any(word in line for word in ("evil.example", "ceo@bank", "victim.example",
                                                                      "spoofed")) or line.startswith("RSET")]
probe("CRLF and angle-bracket addresses through SMTP", "no injected line at the server", f"{len(injected)} lines",
      not injected)
invalid = psql(f"SELECT string_agg(customer_id::text, ',' ORDER BY customer_id) FROM coupond.send_recipients "
               f"WHERE send_id = {send} AND email_error = 'invalid_email_address'")
probe("hostile addresses fail alone", "customers 1,2,3,4 invalid_email_address", invalid, invalid == "1,2,3,4")

code, report = coupond("report", "--config", CONFIG, str(send))
line5 = next((l for l in report.splitlines() if l.startswith('"5",')), "")
probe("report: mobile x;=cmd|...", "quoted, formula after ';' neutralised", line5[:60],
      "\"x;'=cmd|" in line5)

# --- Stalled report downloads ---------------------------------------------------------------------------------------
messages, current = [], []
for entry in smtp_lines():
    if entry["line"] == "DATA":
        current = []
    elif entry["line"] == ".":
        messages.append("\r\n".join(current))
    else:
        current.append(entry["line"])
link = None
for raw in messages:
    message = email.message_from_string(raw)
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_payload(decode=True).decode("utf-8", "replace")
            found = re.search(r"http://\S+/reports/\S+", text)
            if found:
                link = found.group(0)
path = link.split(str(PORT), 1)[1] if link else "/reports/0"
stalled = []
for _ in range(100):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", PORT))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
    stalled.append(s)
time.sleep(1)
status, seconds, _ = http("GET", "/healthz")
ready, _, _ = http("GET", "/readyz")
connections = int(psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'probe_daemon'"))
probe("100 stalled report downloads", "/healthz and /readyz 200 within 1 s, database connections bounded",
      f"healthz {status} in {seconds:.3f} s, readyz {ready}, {connections} daemon connections",
      link is not None and status == 200 and ready == 200 and seconds < 1 and connections <= 12)
for s in stalled:
    s.close()
log = open(f"{WORK}/daemon.log", encoding="utf-8", errors="replace").read()
probe("descriptors under a 1024 limit", "no 'Too many open files' in the log",
      "seen" if "Too many open files" in log else "none", "Too many open files" not in log)

passed, failed = results.count(True), results.count(False)
print(f"{passed} passed, {failed} failed")
raise SystemExit(1 if failed else 0)
