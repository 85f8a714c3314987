import Foundation

/// Settings from the configuration file, with environment variables taking precedence.
///
/// ```json
/// {
///   "database": { "url": "postgresql:///coupond" },
///   "paths": { "templates": "/etc/coupond/templates", "sql": "/usr/share/coupond/sql" },
///   "sms": { "price_per_segment": "0.0075" }
/// }
/// ```
///
/// Environment overrides: `COUPOND_DATABASE_URL` (or `DATABASE_URL`), `COUPOND_TEMPLATES`, `COUPOND_SQL_DIR`,
/// `COUPOND_SMS_PRICE_PER_SEGMENT`.
struct Configuration: Decodable {
    struct Database: Decodable {
        var url: String?
    }
    struct Paths: Decodable {
        var templates: String?
        var sql: String?
    }
    struct SMS: Decodable {
        /// Price of one SMS segment in the shop's currency, as a decimal string.
        var pricePerSegment: Decimal?

        enum CodingKeys: String, CodingKey { case pricePerSegment = "price_per_segment" }

        init(pricePerSegment: Decimal? = nil) { self.pricePerSegment = pricePerSegment }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            if let text = try container.decodeIfPresent(String.self, forKey: .pricePerSegment) {
                guard let price = Configuration.decimal(text) else {
                    throw ConfigurationError(setting: "sms.price_per_segment", reason: "\"\(text)\" is not a price")
                }
                pricePerSegment = price
            }
        }
    }

    var database = Database()
    var paths = Paths()
    var sms = SMS()

    enum CodingKeys: String, CodingKey { case database, paths, sms }

    init() {}

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        database = try container.decodeIfPresent(Database.self, forKey: .database) ?? Database()
        paths = try container.decodeIfPresent(Paths.self, forKey: .paths) ?? Paths()
        sms = try container.decodeIfPresent(SMS.self, forKey: .sms) ?? SMS()
    }

    /// Reads `path` when given, then applies the environment.
    ///
    /// - Throws: ``ConfigurationError`` naming the file and the setting that is wrong.
    static func load(path: String?, environment: [String: String]) throws -> Configuration {
        var configuration = Configuration()
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(setting: path, reason: "cannot be read")
            }
            do {
                configuration = try JSONDecoder().decode(Configuration.self, from: data)
            } catch let error as ConfigurationError {
                throw ConfigurationError(setting: error.setting, reason: "\(error.reason) (in \(path))")
            } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
                throw ConfigurationError(setting: context.dottedPath, reason: "must be a \(type) (in \(path))")
            } catch DecodingError.dataCorrupted(let context) {
                throw ConfigurationError(setting: path, reason: "is not valid JSON: \(context.debugDescription)")
            } catch {
                throw ConfigurationError(setting: path, reason: "cannot be decoded: \(error)")
            }
        }
        if let url = environment["COUPOND_DATABASE_URL"] ?? environment["DATABASE_URL"], !url.isEmpty {
            configuration.database.url = url
        }
        if let templates = environment["COUPOND_TEMPLATES"] { configuration.paths.templates = templates }
        if let sql = environment["COUPOND_SQL_DIR"] { configuration.paths.sql = sql }
        if let text = environment["COUPOND_SMS_PRICE_PER_SEGMENT"] {
            guard let price = decimal(text) else {
                throw ConfigurationError(setting: "COUPOND_SMS_PRICE_PER_SEGMENT", reason: "\"\(text)\" is not a price")
            }
            configuration.sms.pricePerSegment = price
        }
        return configuration
    }

    static func decimal(_ text: String) -> Decimal? {
        guard text.range(of: #"^[0-9]+(\.[0-9]+)?$"#, options: .regularExpression) != nil else { return nil }
        return Decimal(string: text, locale: Locale(identifier: "en_US_POSIX"))
    }

    /// The first folder that exists among the configured one and the usual install places.
    static func locate(_ configured: String?, installed: String, development: String) -> URL {
        if let configured { return URL(fileURLWithPath: configured) }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [
            executable.deletingLastPathComponent().appendingPathComponent("../share/coupond/\(development)").path,
            installed,
            FileManager.default.currentDirectoryPath + "/" + development,
        ]
        var isDirectory: ObjCBool = false
        let found = candidates.first { FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) }
        return URL(fileURLWithPath: found ?? candidates.last!).standardizedFileURL
    }

    var templatesDirectory: URL {
        Self.locate(paths.templates, installed: "/usr/share/coupond/templates", development: "templates")
    }

    var sqlDirectory: URL {
        Self.locate(paths.sql, installed: "/usr/share/coupond/sql", development: "sql")
    }
}

/// A configuration value that is missing or wrong, naming the setting.
struct ConfigurationError: Error, CustomStringConvertible {
    var setting: String
    var reason: String
    var description: String { "configuration: \(setting) \(reason)" }
}

extension DecodingError.Context {
    var dottedPath: String { codingPath.map(\.stringValue).joined(separator: ".") }
}
