/// A failure of the engine's own, recorded as `system_error`.
struct EngineError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
