import Foundation
import Logging
import Postgres
import Storage
import TestSupport
import Testing

/// The roles `coupond migrate` creates: what each may do through PostgreSQL, and what it may not.
@Suite struct RolesTests {
    static let now = utc(2026, 12, 1, 10)

    /// A shop, group and coupon, and a send scheduled for 14:00 by the owner.
    struct Setup {
        var shop: Int64
        var group: Int64
        var coupon: Int64
        var send: Int64
    }

    static func setUp(_ db: TestDatabase) throws -> Setup {
        let fixtures = Fixtures(db.connection)
        try fixtures.setClock(now)
        let shop = try fixtures.shop()
        let group = try fixtures.group(shop: shop, members: 3)
        let coupon = try fixtures.coupon(shop: shop)
        let send: Int64 = try db.connection.queryRow(
            """
            INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at)
            VALUES (\(shop), \(group), \(coupon), true, \(utc(2026, 12, 1, 14))) RETURNING id
            """
        )!.decode("id")
        return Setup(shop: shop, group: group, coupon: coupon, send: send)
    }

    /// Runs `sql` as `role` (as a login member of it would) and returns the SQLSTATE it failed with, `nil` when it
    /// succeeded.
    static func run(_ sql: String, as role: String, _ db: TestDatabase) throws -> String? {
        let connection = try db.connect()
        defer { connection.close() }
        try connection.execute(PostgresQuery(unsafeSQL: "SET ROLE " + role))
        do {
            try connection.execute(PostgresQuery(unsafeSQL: sql))
            return nil
        } catch let error as PostgresError {
            return error.sqlState?.code ?? "no sqlstate: \(error.message)"
        }
    }

    static let insufficientPrivilege = "42501"

    @Test func thePlatformSchedulesCancelsAndReadsStatus() throws {
        try TestDatabase.with { db in
            let setup = try Self.setUp(db)
            let insert = """
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at)
                VALUES (\(setup.shop), \(setup.group), \(setup.coupon), true, '2026-12-01 15:00Z') RETURNING id
                """
            #expect(try Self.run(insert, as: "coupond_platform", db) == nil)
            #expect(try Self.run("SELECT coupond.cancel_send(\(setup.send))", as: "coupond_platform", db) == nil)
            #expect(try Self.run("SELECT * FROM coupond.group_activity", as: "coupond_platform", db) == nil)
            #expect(try db.connection.queryRow("SELECT count(*)::int AS n FROM coupond.sends")?.decode("n") == 2)
            #expect(
                try db.connection.queryRow("SELECT status FROM coupond.sends WHERE id = \(setup.send)")?["status"]
                    == "cancelled"
            )
        }
    }

    @Test func thePlatformCannotMoveASendsStatusDeleteItOrWriteTheEnginesColumns() throws {
        try TestDatabase.with { db in
            let setup = try Self.setUp(db)
            for sql in [
                "UPDATE coupond.sends SET status = 'sending' WHERE id = \(setup.send)",
                "UPDATE coupond.sends SET status = 'failed', failure_reason = 'system_error' WHERE id = \(setup.send)",
                "DELETE FROM coupond.sends WHERE id = \(setup.send)",
                """
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at, sent_count)
                VALUES (\(setup.shop), \(setup.group), \(setup.coupon), true, '2026-12-01 15:00Z', 5)
                """,
                "UPDATE coupond.send_recipients SET email_status = 'sent'",
                "SELECT coupond.start_send(\(setup.send), 'x', '1 minute')",
            ] {
                #expect(try Self.run(sql, as: "coupond_platform", db) == Self.insufficientPrivilege, "\(sql)")
            }
            #expect(
                try db.connection.queryRow("SELECT status FROM coupond.sends WHERE id = \(setup.send)")?["status"]
                    == "not_started"
            )
        }
    }

    @Test func onlyTheOwnerMovesTheRuleClockOrDisablesATrigger() throws {
        try TestDatabase.with { db in
            _ = try Self.setUp(db)
            for role in ["coupond_platform", "coupond_daemon", "coupond_readonly"] {
                for sql in [
                    "UPDATE coupond.clock_override SET fixed_at = fixed_at + interval '1 day'",
                    "DELETE FROM coupond.clock_override",
                    "ALTER TABLE coupond.sends DISABLE TRIGGER sends_check_new",
                    "ALTER TABLE coupond.sends DISABLE TRIGGER ALL",
                ] {
                    #expect(try Self.run(sql, as: role, db) == Self.insufficientPrivilege, "\(role): \(sql)")
                }
                // Reading it is harmless, and every rule needs it.
                #expect(try Self.run("SELECT coupond.clock_now()", as: role, db) == nil, "\(role)")
            }
        }
    }

    @Test func theDaemonWorksSendsButCannotChangeTheSchema() throws {
        try TestDatabase.with { db in
            let setup = try Self.setUp(db)
            for sql in [
                "ALTER TABLE coupond.sends ADD COLUMN extra integer",
                "CREATE TABLE coupond.extra (id integer)",
                "DROP TRIGGER sends_check_update ON coupond.sends",
                "CREATE OR REPLACE FUNCTION coupond.clock_now() RETURNS timestamptz LANGUAGE sql AS 'SELECT now()'",
                "INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at) "
                    + "VALUES (\(setup.shop), \(setup.group), \(setup.coupon), true, '2026-12-01 15:00Z')",
                "DELETE FROM coupond.sends",
                "UPDATE coupond.coupons SET receive_limit = NULL",
            ] {
                #expect(try Self.run(sql, as: "coupond_daemon", db) == Self.insufficientPrivilege, "\(sql)")
            }
            #expect(
                try Self.run(
                    "UPDATE coupond.sends SET lease_owner = 'a#1', lease_expires_at = now() WHERE id = \(setup.send)",
                    as: "coupond_daemon",
                    db
                ) == nil
            )
        }
    }

    @Test func theDaemonRefreshesTheRecipientsStatisticsThoughOnlyTheOwnerMayAnalyse() throws {
        try TestDatabase.with { db in
            func tuples() throws -> Double? {
                try db.connection.queryRow(
                    "SELECT reltuples::float8 AS n FROM pg_class WHERE oid = 'coupond.send_recipients'::regclass"
                )?.decode("n")
            }
            let never = try tuples()
            #expect(never == -1)
            #expect(try Self.run("ANALYZE coupond.send_recipients", as: "coupond_daemon", db) == nil)
            // A plain ANALYZE by the daemon's role is skipped with a warning: the table keeps no statistics.
            let skipped = try tuples()
            #expect(skipped == -1)
            #expect(try Self.run("SELECT coupond.analyze_recipients()", as: "coupond_daemon", db) == nil)
            let analysed = try tuples()
            #expect(analysed == 0)
            let refused = try Self.run("SELECT coupond.analyze_recipients()", as: "coupond_platform", db)
            #expect(refused == Self.insufficientPrivilege)
        }
    }

    @Test func theReadOnlyRoleReadsEverythingAndWritesNothing() throws {
        try TestDatabase.with { db in
            let setup = try Self.setUp(db)
            for table in ["sends", "send_recipients", "group_activity", "customers", "gateway_health"] {
                #expect(try Self.run("SELECT * FROM coupond.\(table)", as: "coupond_readonly", db) == nil, "\(table)")
            }
            for sql in [
                "SELECT coupond.cancel_send(\(setup.send))",
                "UPDATE coupond.sends SET lease_owner = 'x'",
                "INSERT INTO coupond.gateway_health (instance, channel, gateway) VALUES ('x', 'email', 'y')",
            ] {
                #expect(try Self.run(sql, as: "coupond_readonly", db) == Self.insufficientPrivilege, "\(sql)")
            }
        }
    }

    @Test func migrateCreatesTheConfiguredRolesAndGrantsThemAgainOnEveryRun() throws {
        try TestDatabase.with(migrated: false) { db in
            let suffix = UUID().uuidString.prefix(8).lowercased()
            let names = RoleNames(
                daemon: "engine_\(suffix)",
                platform: "backend_\(suffix)",
                readonly: "dashboards_\(suffix)"
            )
            let migrator = try Migrator(directory: repositoryRoot.appendingPathComponent("sql"))
            var logger = Logger(label: "test")
            logger.logLevel = .warning
            try migrator.migrate(on: db.connection, logger: logger, roles: names)
            for role in [names.daemon, names.platform, names.readonly] {
                let exists = try db.connection.queryRow(
                    "SELECT NOT rolcanlogin AS nologin FROM pg_roles WHERE rolname = \(role)"
                )
                #expect(try exists?.decode("nologin", as: Bool.self) == true, "\(role) is missing or can log in")
            }
            #expect(try Self.run("SELECT * FROM coupond.group_activity", as: names.platform, db) == nil)
            // A second run applies nothing and keeps the grants.
            #expect(try migrator.migrate(on: db.connection, logger: logger, roles: names).isEmpty)
            #expect(try Self.run("SELECT * FROM coupond.send_recipients", as: names.readonly, db) == nil)
            for role in [names.daemon, names.platform, names.readonly] {
                try db.connection.execute(PostgresQuery(unsafeSQL: "DROP OWNED BY \(role); DROP ROLE \(role)"))
            }
        }
    }
}
