import Foundation
import Postgres
import TestSupport
import Testing

@Suite struct PostgresConnectionTests {
    @Test func parametersAreBoundNeverSpliced() throws {
        try TestDatabase.with(migrated: false) { db in
            let hostile = "'); DROP TABLE t; --"
            try db.connection.execute("CREATE TABLE t (value text)")
            try db.connection.execute("INSERT INTO t VALUES (\(hostile))")
            let row = try db.connection.queryRow("SELECT value FROM t WHERE value = \(hostile)")
            #expect(try row?.decode("value", as: String.self) == hostile)
        }
    }

    @Test func arrayElementsArriveAsWrittenWhateverTheyHold() throws {
        try TestDatabase.with(migrated: false) { db in
            let values: [String?] = [
                #"quote " and backslash \ "#, "{braces}, commas", "NULL", nil, "", " spaced ", "héllo 🎟", "a\nb",
            ]
            let rows = try db.connection.query(
                "SELECT value, ordinality FROM unnest(\(values)::text[]) WITH ORDINALITY AS v(value) ORDER BY ordinality"
            )
            #expect(try rows.map { try $0.decode("value", as: String?.self) } == values)
        }
    }

    @Test func valuesRoundTripWithTheirTypes() throws {
        try TestDatabase.with(migrated: false) { db in
            let date = Date(timeIntervalSince1970: 1_764_590_400.123456)
            let bytes = Data([0, 1, 0xAB, 0xFF])
            let id = UUID()
            let nothing: String? = nil
            let row = try db.connection.queryRow(
                """
                SELECT \(42)::bigint AS int, \("héllo\tworld")::text AS text, \(true)::boolean AS flag,
                       \(date)::timestamptz AS at, \(bytes)::bytea AS bytes, \(id)::uuid AS id,
                       \(nothing)::text AS missing, \(Decimal(string: "12.3456")!)::numeric AS price,
                       \([1, 2, 3])::int[] AS list, \(2.5)::float8 AS ratio
                """
            )!
            #expect(try row.decode("int", as: Int.self) == 42)
            #expect(try row.decode("text", as: String.self) == "héllo\tworld")
            #expect(try row.decode("flag", as: Bool.self) == true)
            #expect(abs(try row.decode("at", as: Date.self).timeIntervalSince(date)) < 0.000_001)
            #expect(try row.decode("bytes", as: Data.self) == bytes)
            #expect(try row.decode("id", as: UUID.self) == id)
            #expect(try row.decode("missing", as: String?.self) == nil)
            #expect(try row.decode("price", as: Decimal.self) == Decimal(string: "12.3456"))
            #expect(row["list"] == "{1,2,3}")
            #expect(try row.decode("ratio", as: Double.self) == 2.5)
            #expect(throws: PostgresError.self) { try row.decode("missing", as: String.self) }
            #expect(throws: PostgresError.self) { try row.decode("text", as: Int.self) }
        }
    }

    @Test func timestampsWithOffsetsAndOldDatesParse() throws {
        try TestDatabase.with(migrated: false) { db in
            try db.connection.execute("SET TimeZone = 'Asia/Kolkata'")
            let row = try db.connection.queryRow("SELECT '2026-12-01 10:00:00+05:30'::timestamptz AS at")!
            #expect(try row.decode("at", as: Date.self) == utc(2026, 12, 1, 4, 30))
        }
    }

    @Test func serverErrorsCarryTheirDiagnosticFields() throws {
        try TestDatabase.with(migrated: false) { db in
            try db.connection.execute("CREATE TABLE t (id int PRIMARY KEY)")
            try db.connection.execute("INSERT INTO t VALUES (1)")
            let error = #expect(throws: PostgresError.self) { try db.connection.execute("INSERT INTO t VALUES (\(1))") }
            #expect(error?.code == .queryFailed)
            #expect(error?.sqlState == .uniqueViolation)
            #expect(error.map { SQLState("23") ~= $0.sqlState } == true)
            #expect(error?.constraint == "t_pkey")
            #expect(error?.detail?.contains("(id)=(1)") == true)
            // The description leaves out the detail, which echoes row values.
            #expect(error?.description.contains("(id)=(1)") == false)
            #expect(error?.debugDescription.contains("(id)=(1)") == true)

            let hinted = #expect(throws: PostgresError.self) {
                try db.connection.execute(
                    "DO $$ BEGIN RAISE EXCEPTION USING MESSAGE = 'nope', HINT = 'try again', ERRCODE = 'P0001'; END $$"
                )
            }
            #expect(hinted?.message == "nope")
            #expect(hinted?.hint == "try again")
        }
    }

    @Test func aTransactionRollsBackWhenItsBodyThrows() throws {
        try TestDatabase.with(migrated: false) { db in
            try db.connection.execute("CREATE TABLE t (id int)")
            struct Abort: Error {}
            #expect(throws: Abort.self) {
                try db.connection.transaction {
                    try db.connection.execute("INSERT INTO t VALUES (1)")
                    throw Abort()
                }
            }
            try db.connection.transaction { try db.connection.execute("INSERT INTO t VALUES (2)") }
            let rows = try db.connection.query("SELECT id FROM t")
            #expect(try rows.map { try $0.decode("id", as: Int.self) } == [2])
        }
    }

    @Test func copyInAndOutKeepAwkwardValues() throws {
        try TestDatabase.with(migrated: false) { db in
            try db.connection.execute("CREATE TABLE t (id int, value text)")
            let values: [String?] = ["plain", "tab\there", "new\nline", "back\\slash", nil, "", "ünïcödé 🎟", "\\N"]
            let count = try db.connection.copyIn(
                "COPY t (id, value) FROM STDIN",
                rows: values.enumerated().map { [String($0.offset), $0.element] }
            )
            #expect(count == values.count)
            var read: [String?] = []
            let out = try db.connection.copyOut("COPY (SELECT value FROM t ORDER BY id) TO STDOUT") {
                read.append($0[0])
            }
            #expect(out == values.count)
            #expect(read == values)
        }
    }

    @Test func aRejectedCopyStoresNothingAndLeavesTheConnectionUsable() throws {
        try TestDatabase.with(migrated: false) { db in
            try db.connection.execute("CREATE TABLE t (id int NOT NULL)")
            let error = #expect(throws: PostgresError.self) {
                try db.connection.copyIn("COPY t (id) FROM STDIN", rows: [["1"], ["2"], [nil]])
            }
            #expect(error?.sqlState == .notNullViolation)
            #expect(try db.connection.queryRow("SELECT count(*) AS n FROM t")?.decode("n", as: Int.self) == 0)
        }
    }

    @Test func copyStreamsManyRows() throws {
        try TestDatabase.with(migrated: false) { db in
            try db.connection.execute("CREATE TABLE t (id int, value text)")
            let rows = (0..<50_000).lazy.map { [String($0), "value \($0)"] as [String?] }
            #expect(try db.connection.copyIn("COPY t FROM STDIN", rows: rows) == 50_000)
            var sum = 0
            try db.connection.copyOut("COPY t (id) TO STDOUT") { sum += Int($0[0]!)! }
            #expect(sum == (0..<50_000).reduce(0, +))
        }
    }

    @Test func notificationsReachAListener() throws {
        try TestDatabase.with(migrated: false) { db in
            let listener = try db.connect()
            defer { listener.close() }
            try listener.listen("coupond test channel")
            #expect(try listener.waitForNotifications(timeout: 0.05).isEmpty)
            try db.connection.notify("coupond test channel", payload: "42")
            let received = try listener.waitForNotifications(timeout: 5)
            #expect(received.map(\.payload) == ["42"])
            #expect(received.first?.channel == "coupond test channel")
            #expect(received.first?.senderPID == db.connection.backendPID)
        }
    }

    @Test func safeguardsSetTheSessionsTimeoutsAndEndATransactionLeftIdle() throws {
        try TestDatabase.with(migrated: false) { db in
            let guarded = try PostgresConnection(
                connectionString: ProcessInfo.processInfo.environment["DATABASE_URL"],
                database: db.name,
                safeguards: ConnectionSafeguards(statementTimeout: 60, idleInTransactionTimeout: 1)
            )
            defer { guarded.close() }
            #expect(try guarded.queryRow("SHOW statement_timeout")?["statement_timeout"] == "1min")
            try guarded.execute("BEGIN")
            try guarded.execute("SELECT 1")
            // A client that stops mid-transaction (frozen) loses the session, and with it the row locks it held.
            Thread.sleep(forTimeInterval: 1.5)
            let ended = #expect(throws: PostgresError.self) { try guarded.execute("SELECT 1") }
            #expect(ended?.isTransient == true)
        }
    }

    @Test func aRefusedConnectionSaysWhy() throws {
        let error = #expect(throws: PostgresError.self) {
            _ = try PostgresConnection(connectionString: "host=127.0.0.1 port=1 connect_timeout=2")
        }
        #expect(error?.code == .connectionFailed)
        #expect(error?.message.contains("127.0.0.1") == true)
    }

    @Test func subqueriesAreRenumbered() {
        let inner: PostgresQuery = "a = \(1) AND b = \(2)"
        let outer: PostgresQuery = "SELECT \(0), \(subquery: inner), \(3)"
        #expect(outer.sql == "SELECT $1, a = $2 AND b = $3, $4")
        #expect(outer.parameters == ["0", "1", "2", "3"])
        var many = PostgresQuery.StringInterpolation(literalCapacity: 0, interpolationCount: 0)
        for value in 0..<10 { many.appendInterpolation(value) }
        many.appendInterpolation(subquery: inner)
        #expect(PostgresQuery(stringInterpolation: many).sql.hasSuffix("a = $11 AND b = $12"))
    }
}
