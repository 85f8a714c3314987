/// The schema this build of Coupond works with.
public enum Schema {
    /// The highest `sql/` migration this binary's SQL relies on. `coupond run` refuses a database at another version.
    public static let expectedVersion = 7
}
