"""The scenarios of scripts/chaos (run through it: it starts PostgreSQL and builds coupond first).

Each scenario gets a database of its own, a simulator of its own (non-idempotent: a repeated request is delivered
again) and one send on both channels through the SendGrid and Twilio APIs. The verdict compares what the simulator
delivered with what the database recorded, customer by customer and channel by channel.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

COUPOND = os.environ["COUPOND_BIN"]
SIMULATOR = os.path.join(os.path.dirname(COUPOND), "coupond-gateway-sim")
PG_BINDIR = os.environ["COUPOND_PG_BINDIR"]
PG_DIR = os.environ["COUPOND_PG_DIR"]
PG_RUNAS = os.environ.get("COUPOND_PG_RUNAS", "").split()
MERCHANT = "owner@chaos.example"


def psql(sql, database, quiet=True):
    """Runs SQL and returns its rows as lists of text."""
    result = subprocess.run(
        ["psql", "-X", "-Atq", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}\n{sql}")
    return [line.split("\t") for line in result.stdout.splitlines() if line]


class Daemon:
    def __init__(self, scenario, name):
        self.name = name
        self.log = open(os.path.join(scenario.folder, f"daemon-{name}.log"), "w")
        env = dict(os.environ, PGDATABASE=scenario.database, COUPOND_INSTANCE_NAME=name)
        self.process = subprocess.Popen(
            [COUPOND, "run", "--config", scenario.config, "--log-level", "info"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def signal(self, sig):
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Scenario:
    """One send, its database, its simulator and its daemons."""

    def __init__(self, index, name, customers, faults, max_in_flight=16):
        self.name = name
        self.customers = customers
        self.database = f"chaos_{index}"
        self.folder = tempfile.mkdtemp(prefix=f"coupond-chaos-{name}-")
        self.daemons = []
        psql(f"DROP DATABASE IF EXISTS {self.database}", "postgres")
        psql(f"CREATE DATABASE {self.database}", "postgres")
        env = dict(os.environ, PGDATABASE=self.database)
        subprocess.run([COUPOND, "migrate"], check=True, env=env, capture_output=True)
        self.seed()
        self.base_faults = faults
        plan = {"non_idempotent": True, **faults}
        self.sim_log = open(os.path.join(self.folder, "simulator.log"), "w")
        self.simulator = subprocess.Popen(
            [SIMULATOR, "--faults", json.dumps(plan)],
            stdout=subprocess.PIPE, stderr=self.sim_log, text=True)
        line = self.simulator.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"simulator did not start: {line}")
        self.base = line.strip()[len("listening on "):]
        self.config = self.write_config(max_in_flight)

    def seed(self):
        psql(f"""
            INSERT INTO coupond.shops (name, login_url, merchant_email, time_zone, currency, postal_address)
            VALUES ('Chaos Shop', 'https://chaos.example/login', '{MERCHANT}', 'UTC', 'USD', '1 Test Road, Testville');
            INSERT INTO coupond.customer_groups (shop_id, name) VALUES (1, 'Everyone');
            INSERT INTO coupond.customers (shop_id, name, email, mobile, email_consent, sms_consent)
            SELECT 1, 'Customer ' || n, 'c' || n || '@mail.example', '+1555' || lpad(n::text, 7, '0'), true, true
            FROM generate_series(1, {self.customers}) AS n;
            INSERT INTO coupond.group_members (group_id, customer_id) SELECT 1, id FROM coupond.customers;
            INSERT INTO coupond.coupons (shop_id, title, kind, status, receive_limit, target)
            VALUES (1, '10% off', 'get_coupon_link', 'published', NULL, 'all_customers');
            INSERT INTO coupond.clock_override (fixed_at) VALUES (date_trunc('hour', now()));
            INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at)
            VALUES (1, 1, 1, true, true, date_trunc('hour', now()) + interval '2 hours');
        """, self.database)

    def write_config(self, max_in_flight):
        token = os.path.join(self.folder, "token")
        with open(token, "w") as f:
            f.write("chaos-token\n")
        key = os.path.join(self.folder, "claim-key")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        config = {
            "engine": {"poll_interval_seconds": 0.3, "lease_seconds": 3, "batch_size": 100, "max_in_flight": max_in_flight,
                       "shutdown_grace_seconds": 2},
            "email": {"provider": "sendgrid", "url": f"{self.base}/v3/mail/send", "from": "coupons@chaos.example",
                      "credential_file": token, "timeout_seconds": 2, "retry_budget_seconds": 600},
            "sms": {"provider": "twilio", "url": self.base, "account_sid": "AC0123456789abcdef0123456789abcdef",
                    "from": "+15005550006", "credential_file": token, "timeout_seconds": 2,
                    "retry_budget_seconds": 600, "reconcile_after_seconds": 1, "price_per_segment": "0.01"},
            "links": {"claim_key_file": key, "report_key_file": key, "public_base_url": "https://coupond.chaos.example"},
        }
        path = os.path.join(self.folder, "coupond.json")
        with open(path, "w") as f:
            json.dump(config, f)
        return path

    # Actions the scenarios use.

    def start(self, name):
        daemon = Daemon(self, name)
        self.daemons.append(daemon)
        return daemon

    def arrive(self):
        psql("UPDATE coupond.clock_override SET fixed_at = fixed_at + interval '2 hours'; NOTIFY coupond_sends",
             self.database)

    def send_row(self):
        rows = psql("SELECT status, sent_count + failed_count, coalesce(notice_status, ''), unknown_count, "
                    "reconciled_count FROM coupond.sends WHERE id = 1", self.database)
        status, finished, notice, unknown, reconciled = rows[0]
        return status, int(finished), notice, int(unknown), int(reconciled)

    def wait_for(self, condition, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if condition():
                    return
            except RuntimeError:
                pass  # the database may be restarting or read-only
            time.sleep(0.1)
        raise TimeoutError(f"{what} within {timeout} s")

    def wait_finished(self, share, timeout=120):
        """Waits until `share` of the customers are finished (sent or failed)."""
        self.wait_for(lambda: self.send_row()[1] >= share * self.customers, timeout, f"{share:.0%} finished")

    def wait_done(self, timeout):
        def done():
            status, _, notice, _, _ = self.send_row()
            return status in ("done", "failed") and notice in ("sent", "failed")
        self.wait_for(done, timeout, "the send and its notice ending")

    def faults(self, **plan):
        """Replaces the simulator's fault plan; the base delay stays unless `plan` sets another."""
        body = json.dumps({"non_idempotent": True, **self.base_faults, **plan}).encode()
        request = urllib.request.Request(f"{self.base}/faults", data=body, method="PUT")
        urllib.request.urlopen(request, timeout=10).read()

    def simulator_json(self, path):
        return json.load(urllib.request.urlopen(f"{self.base}{path}", timeout=30))

    def close(self):
        for daemon in self.daemons:
            daemon.stop()
        self.simulator.terminate()
        self.simulator.wait()
        self.sim_log.close()

    # The verdict.

    def verdict(self):
        messages = self.simulator_json("/messages")
        stats = self.simulator_json("/stats")
        delivered = {"email": {}, "sms": {}}
        notices = 0
        for message in messages:
            if message["to"] == MERCHANT:
                notices += 1
                continue
            counts = delivered[message["channel"]]
            counts[message["to"]] = counts.get(message["to"], 0) + 1
        rows = psql("SELECT email, mobile, email_status, coalesce(email_error, ''), sms_status, "
                    "coalesce(sms_error, '') FROM coupond.send_recipients WHERE send_id = 1", self.database)
        lost = unconfirmed = 0
        problems = []
        for email, mobile, email_status, email_error, sms_status, sms_error in rows:
            for channel, address, status, error in (("email", email, email_status, email_error),
                                                    ("sms", mobile, sms_status, sms_error)):
                got = delivered[channel].get(address, 0)
                if status == "sent" and got == 0:
                    lost += 1
                    problems.append(f"{channel} {address}: recorded sent, never delivered")
                elif status in ("pending", "unknown"):
                    lost += 1
                    problems.append(f"{channel} {address}: still {status}")
                elif status == "failed" and error == "delivery_unconfirmed":
                    unconfirmed += 1
                elif status == "failed" and got > 0:
                    lost += 1
                    problems.append(f"{channel} {address}: recorded failed ({error}), but delivered")
        missing = self.customers - len(rows)
        if missing:
            lost += missing
            problems.append(f"{missing} customers have no recipient row")
        twice = {channel: sum(1 for n in counts.values() if n > 1) for channel, counts in delivered.items()}
        status, _, notice, unknown, reconciled = self.send_row()
        redelivered = stats.get("redelivered", 0)
        ok = (status == "done" and lost == 0 and unknown == 0 and twice["email"] == 0 and twice["sms"] == 0
              and notices <= 1 and redelivered == 0)
        if notices > 1:
            problems.append(f"the merchant got {notices} notices")
        if redelivered:
            problems.append(f"{redelivered} requests delivered a second time")
        if status != "done":
            problems.append(f"the send ended {status}")
        return {
            "messages": len(messages), "email_twice": twice["email"], "sms_twice": twice["sms"], "lost": lost,
            "unconfirmed": unconfirmed, "unknown": unknown, "reconciled": reconciled, "notice": notice,
            "status": status, "ok": ok, "problems": problems[:5],
        }


# The scenarios: each gets a fresh Scenario and drives it to the end.

def kill_mid_batch(s, outage):
    first = s.start("a")
    s.arrive()
    s.wait_finished(0.3)
    first.signal(signal.SIGKILL)
    s.start("b")


def kill_at_start(s, outage):
    first = s.start("a")
    s.arrive()
    s.wait_for(lambda: s.send_row()[0] == "sending", 60, "the start")
    first.signal(signal.SIGKILL)
    s.start("b")


def kill_between_send_and_record(s, outage):
    # Every answer takes a second: the kill comes while a batch is out and before it is recorded.
    s.faults(delay_rate=1.0, delay_milliseconds=1000)
    first = s.start("a")
    s.arrive()
    s.wait_finished(0.2)
    time.sleep(0.5)
    first.signal(signal.SIGKILL)
    s.faults()
    s.start("b")


def kill_during_notice(s, outage):
    first = s.start("a")
    s.arrive()
    s.wait_finished(0.9)
    # From here every answer takes 1.5 s (under the 2 s timeout): the notice is out when the send is done, and the
    # kill comes before its answer.
    s.faults(delay_rate=1.0, delay_milliseconds=1500)
    s.wait_for(lambda: s.send_row()[0] == "done", 180, "done")
    first.signal(signal.SIGKILL)
    s.faults()
    s.start("b")


def repeated_kills(s, outage):
    s.arrive()
    for index, share in enumerate((0.15, 0.35, 0.55, 0.75)):
        daemon = s.start(f"k{index}")
        s.wait_finished(share)
        daemon.signal(signal.SIGKILL)
    s.start("last")


def sigstop_past_the_lease(s, outage):
    first = s.start("a")
    s.start("b")
    s.arrive()
    s.wait_finished(0.3)
    holder = psql("SELECT split_part(lease_owner, '#', 1) FROM coupond.sends WHERE id = 1", s.database)[0][0]
    frozen = next((d for d in s.daemons if d.name == holder), first)
    frozen.signal(signal.SIGSTOP)
    time.sleep(8)
    frozen.signal(signal.SIGCONT)


def sigterm_and_restart(s, outage):
    first = s.start("a")
    s.arrive()
    s.wait_finished(0.3)
    first.signal(signal.SIGTERM)
    first.process.wait(timeout=60)
    s.start("b")


def two_instances_racing(s, outage):
    s.start("a")
    s.start("b")
    s.arrive()


def postgres_restart(s, outage):
    s.start("a")
    s.arrive()
    s.wait_finished(0.3)
    # The new postmaster keeps what it inherits open: give it a log file, not this script's pipes.
    subprocess.run(PG_RUNAS + [f"{PG_BINDIR}/pg_ctl", "-D", f"{PG_DIR}/data", "-l", f"{PG_DIR}/server.log",
                               "-m", "immediate", "-w", "restart"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def backend_kills(s, outage):
    s.start("a")
    s.arrive()
    for share in (0.2, 0.4, 0.6):
        s.wait_finished(share)
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             f"WHERE datname = '{s.database}' AND pid <> pg_backend_pid()", "postgres")


def read_only_database(s, outage):
    s.start("a")
    s.arrive()
    s.wait_finished(0.3)
    psql("ALTER SYSTEM SET default_transaction_read_only = on", "postgres")
    psql("SELECT pg_reload_conf()", "postgres")
    time.sleep(outage / 2)
    subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-c", "SET default_transaction_read_only = off",
                    "-c", "ALTER SYSTEM RESET default_transaction_read_only", "-c", "SELECT pg_reload_conf()"],
                   check=True, capture_output=True)


def gateway_down(s, outage):
    s.start("a")
    s.arrive()
    s.wait_finished(0.3)
    s.faults(error_rate=1.0, error_status=503)
    time.sleep(outage)
    s.faults()


def under_faults(name, **plan):
    """A scenario that runs a whole send under one fault plan."""
    def drive(s, outage):
        s.faults(**plan)
        s.start("a")
        s.arrive()
    drive.__name__ = name
    return drive


storm_5xx = under_faults("storm_5xx", error_rate=0.5, error_status=502)
timeouts_after_accept = under_faults("timeouts_after_accept", delay_rate=0.05, delay_milliseconds=3000)
dropped_connections = under_faults("dropped_connections", drop_rate=0.05, lost_answer_rate=0.05)
storm_429_with_retry_after = under_faults("storm_429_with_retry_after", rate_limit_rate=0.5, retry_after_seconds=1)
storm_429_without_retry_after = under_faults("storm_429_without_retry_after", rate_limit_rate=0.5,
                                             retry_after_seconds=-1)
malformed_2xx = under_faults("malformed_2xx", malformed_rate=0.1)


SCENARIOS = [
    ("kill -9 at the start", kill_at_start),
    ("kill -9 mid-batch", kill_mid_batch),
    ("kill -9 between send and record", kill_between_send_and_record),
    ("kill -9 during the notice", kill_during_notice),
    ("repeated kill -9", repeated_kills),
    ("SIGSTOP past the lease, SIGCONT", sigstop_past_the_lease),
    ("SIGTERM mid-send, restart", sigterm_and_restart),
    ("two instances racing", two_instances_racing),
    ("PostgreSQL restart mid-send", postgres_restart),
    ("pg_terminate_backend x3", backend_kills),
    ("read-only database", read_only_database),
    ("gateway down, then back", gateway_down),
    ("5xx storm (50%)", storm_5xx),
    ("timeouts after accept (5%)", timeouts_after_accept),
    ("dropped connections, lost answers", dropped_connections),
    ("429 storm with Retry-After", storm_429_with_retry_after),
    ("429 storm without Retry-After", storm_429_without_retry_after),
    ("malformed 2xx bodies (10%)", malformed_2xx),
]


def main():
    parser = argparse.ArgumentParser(description="Coupond's fault suite (run it through scripts/chaos).")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--only")
    parser.add_argument("--markdown")
    parser.add_argument("--delay-ms", type=int, default=50,
                        help="every answer's delay, so that a send lasts long enough for the faults (default 50)")
    parser.add_argument("--max-in-flight", type=int, default=16)
    parser.add_argument("--outage", type=int, help="seconds of each outage (default 120, or 20 with --quick)")
    args = parser.parse_args()
    customers = args.customers or (1000 if args.quick else 3000)
    outage = args.outage or (20 if args.quick else 120)
    wanted = {name.strip() for name in args.only.split(",")} if args.only else None
    header = ("| scenario | messages | email twice | SMS twice | lost | unconfirmed | unknown left | reconciled "
              "| notice | seconds | result |")
    lines = [header, "|" + "---|" * 11]
    print(header.replace("| ", "").replace(" |", " ").strip())
    failures = 0
    for index, (name, drive) in enumerate(SCENARIOS):
        if wanted and name not in wanted and drive.__name__ not in wanted:
            continue
        started = time.time()
        # Answers take a while, so that a send lasts long enough for the faults to land in its middle.
        base = {"delay_rate": 1.0, "delay_milliseconds": args.delay_ms} if args.delay_ms else {}
        scenario = Scenario(index, drive.__name__, customers, base, args.max_in_flight)
        try:
            drive(scenario, outage)
            scenario.wait_done(timeout=outage + 300)
            result = scenario.verdict()
        except Exception as error:  # a scenario that does not end is a failure, with the reason
            result = {"messages": "-", "email_twice": "-", "sms_twice": "-", "lost": "-", "unconfirmed": "-",
                      "unknown": "-", "reconciled": "-", "notice": "-", "ok": False, "problems": [str(error)]}
        finally:
            scenario.close()
        seconds = time.time() - started
        verdict = "PASS" if result["ok"] else "FAIL"
        failures += 0 if result["ok"] else 1
        row = (f"| {name} | {result['messages']} | {result['email_twice']} | {result['sms_twice']} | "
               f"{result['lost']} | {result['unconfirmed']} | {result['unknown']} | {result['reconciled']} | "
               f"{result['notice']} | {seconds:.0f} | {verdict} |")
        lines.append(row)
        print(row, flush=True)
        for problem in result["problems"]:
            print(f"    {problem} (logs in {scenario.folder})", flush=True)
    summary = (f"{len(lines) - 2} scenarios, {failures} failed; {customers} customers each, both channels through "
               f"the SendGrid and Twilio APIs of a simulator that delivers repeats again; answers delayed "
               f"{args.delay_ms} ms, {args.max_in_flight} requests at once, outages {outage} s.")
    print(summary)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# Chaos suite: latest run\n\n")
            f.write(f"`scripts/chaos`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. {summary}\n\n")
            f.write("\n".join(lines) + "\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
