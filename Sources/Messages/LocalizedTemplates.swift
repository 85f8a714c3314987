public import Foundation

/// The message templates in every language the operator wrote them in: the templates folder itself is the default,
/// and each subfolder named after a locale (`fr`, `ar`, `pt-br`) that holds message templates is that locale's. A
/// customer gets their own locale's, else their language's (`fr` for `fr-CA`), else the shop's locale's (the same
/// two steps), else the default.
public struct LocalizedTemplates: Sendable {
    public let standard: MessageTemplates
    /// By normalized locale: lower case, `-` between parts.
    public let byLocale: [String: MessageTemplates]

    /// Loads the default templates of `directory` and those of each locale subfolder.
    ///
    /// - Parameter defaultLanguage: what the default templates are written in (`paths.templates_language`).
    /// - Throws: ``TemplateError`` naming a missing or unparsable file, in the default folder or a locale's.
    public init(directory: URL, defaultLanguage: String = "en") throws {
        standard = try MessageTemplates(directory: directory, language: Self.normalize(defaultLanguage))
        var byLocale: [String: MessageTemplates] = [:]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for entry in entries.sorted() {
            let folder = directory.appendingPathComponent(entry)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue,
                MessageTemplates.fileNames.contains(where: {
                    FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path)
                })
            else { continue }
            let locale = Self.normalize(entry)
            byLocale[locale] = try MessageTemplates(directory: folder, language: locale)
        }
        self.byLocale = byLocale
    }

    /// `pt_BR` and `PT-br` both become `pt-br`.
    public static func normalize(_ locale: String) -> String {
        locale.lowercased().replacingOccurrences(of: "_", with: "-").trimmingCharacters(in: .whitespaces)
    }

    /// The locale whose templates a customer gets, or `nil` for the default ones.
    public func locale(customer: String?, shop: String?) -> String? {
        Self.pick(customer: customer, shop: shop, among: byLocale)
    }

    /// The first of the customer's locale, its language, the shop's locale and its language that is a key of
    /// `available`.
    static func pick<Value>(customer: String?, shop: String?, among available: [String: Value]) -> String? {
        guard !available.isEmpty else { return nil }
        for candidate in [customer, shop].compactMap({ $0 }) where !candidate.isEmpty {
            let locale = normalize(candidate)
            if available[locale] != nil { return locale }
            if let language = locale.split(separator: "-").first.map(String.init), available[language] != nil {
                return language
            }
        }
        return nil
    }

    /// The templates of `locale` (as ``locale(customer:shop:)`` returns it).
    public func templates(_ locale: String?) -> MessageTemplates {
        locale.flatMap { byLocale[$0] } ?? standard
    }

    /// Every locale's templates rendered once for a send (see ``PreparedMessage``).
    public func prepare(_ context: MessageContext) -> LocalizedMessage {
        LocalizedMessage(
            standard: standard.prepare(context),
            byLocale: byLocale.mapValues { $0.prepare(context) }
        )
    }
}

/// A send's message prepared in every locale.
public struct LocalizedMessage: Sendable {
    public let standard: PreparedMessage
    public let byLocale: [String: PreparedMessage]

    /// The locale a customer's message is in, or `nil` for the default (see ``LocalizedTemplates``).
    public func locale(customer: String?, shop: String?) -> String? {
        LocalizedTemplates.pick(customer: customer, shop: shop, among: byLocale)
    }

    /// The message in `locale` (as ``locale(customer:shop:)`` returns it).
    public func message(_ locale: String?) -> PreparedMessage {
        locale.flatMap { byLocale[$0] } ?? standard
    }
}
