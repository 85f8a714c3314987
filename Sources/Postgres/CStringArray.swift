/// Calls `body` with a C array of C strings that lives only for the duration of the call.
///
/// `nil` elements stay `NULL` (libpq reads a `NULL` parameter value as SQL NULL); when `nullTerminated` is true a
/// final `NULL` is appended, as `PQconnectdbParams` expects.
func withCStringArray<R>(
    _ strings: [String?],
    nullTerminated: Bool = false,
    _ body: ([UnsafePointer<CChar>?]) throws -> R
) rethrows -> R {
    // strdup gives each string stable storage for the whole call without nesting closures per element.
    let pointers: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0)! } }
    defer { for pointer in pointers { free(pointer) } }
    var array = pointers.map { UnsafePointer($0) }
    if nullTerminated { array.append(nil) }
    return try body(array)
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
