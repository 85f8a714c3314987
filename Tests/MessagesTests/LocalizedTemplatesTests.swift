import Foundation
import Messages
import TestSupport
import Testing

/// Which locale's templates a customer gets.
struct LocalizedTemplatesTests {
    /// The shipped templates, with locale folders holding copies of them.
    static func folder(locales: [String]) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("coupond-locales-\(UUID())")
        try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent("templates"), to: folder)
        for locale in locales {
            let directory = folder.appendingPathComponent(locale)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for name in MessageTemplates.fileNames {
                try FileManager.default.copyItem(
                    at: folder.appendingPathComponent(name),
                    to: directory.appendingPathComponent(name)
                )
            }
        }
        return folder
    }

    @Test func theCustomersLocaleThenItsLanguageThenTheShopsThenTheDefault() throws {
        let folder = try Self.folder(locales: ["fr", "pt_BR", "ar"])
        defer { try? FileManager.default.removeItem(at: folder) }
        let templates = try LocalizedTemplates(directory: folder)
        #expect(Set(templates.byLocale.keys) == ["fr", "pt-br", "ar"])
        #expect(templates.locale(customer: "pt-BR", shop: "en") == "pt-br")
        #expect(templates.locale(customer: "fr_CA", shop: "en") == "fr")
        #expect(templates.locale(customer: "de", shop: "ar") == "ar")
        #expect(templates.locale(customer: nil, shop: "fr-FR") == "fr")
        #expect(templates.locale(customer: "de", shop: "en") == nil)
        #expect(templates.locale(customer: "", shop: nil) == nil)
    }

    @Test func aLocaleFolderMissingATemplateIsRefusedNamingTheFile() throws {
        let folder = try Self.folder(locales: ["fr"])
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.removeItem(at: folder.appendingPathComponent("fr/sms.mustache"))
        #expect {
            _ = try LocalizedTemplates(directory: folder)
        } throws: { error in
            "\(error)".contains("fr/sms.mustache")
        }
    }

    @Test func withoutLocaleFoldersEveryoneGetsTheDefaultAndNothingIsLookedUp() throws {
        let templates = try LocalizedTemplates(directory: repositoryRoot.appendingPathComponent("templates"))
        #expect(templates.byLocale.isEmpty)
        #expect(templates.locale(customer: "fr", shop: "fr") == nil)
    }
}
