import Foundation
import Messages
import Testing

@Suite struct ClaimLinkTests {
    @Test func carriesTokenAndUTMAndKeepsTheLoginQuery() throws {
        let link = try #require(
            ClaimLink.make(
                loginURL: "https://shop.example/account/login?lang=en",
                token: "abc+/=",
                channel: .sms,
                campaign: "coupon-7"
            )
        )
        let items = try #require(URLComponents(string: link)?.queryItems)
        let values = Dictionary(uniqueKeysWithValues: items.map { ($0.name, $0.value ?? "") })
        #expect(values["lang"] == "en")
        #expect(values[ClaimLink.tokenParameter] == "abc+/=")
        #expect(values["utm_source"] == "coupond")
        #expect(values["utm_medium"] == "sms")
        #expect(values["utm_campaign"] == "coupon-7")
        #expect(link.hasPrefix("https://shop.example/account/login?"))
    }

    @Test func refusesARelativeLoginURL() {
        #expect(ClaimLink.make(loginURL: "/login", token: "t", channel: .email, campaign: "c") == nil)
    }

    @Test(arguments: [
        "https://shop.example/account/login",
        "https://shop.example/login?next=%2Fcart&utm_source=old",
        "http://shop.example:8080/",
    ])
    func aSendsLinkTemplateGivesTheSameLinkAsMake(loginURL: String) throws {
        let template = try #require(ClaimLink.Template(loginURL: loginURL, channel: .sms, campaign: "coupon-7"))
        for token in ["Zx9-_aB3", "12.345.Zx9-_aB3~", "abc+/=", "ä"] {
            #expect(
                template.link(token: token)
                    == ClaimLink.make(loginURL: loginURL, token: token, channel: .sms, campaign: "coupon-7")
            )
        }
    }
}

@Suite struct ShortLinkCodeTests {
    @Test func aCodeIsEighteenBase62CharactersAndDecodesToItsBytes() {
        for bytes in [
            [UInt8](repeating: 0, count: 13), [UInt8](repeating: 0xFF, count: 13),
            (0..<13).map { UInt8($0 * 19 & 0xFF) },
        ] {
            let code = ShortLinkCode.encode(bytes)
            #expect(code.count == 18)
            #expect(code.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
            #expect(ShortLinkCode.decode(code) == bytes)
        }
    }

    @Test func textThatIsNotACodeIsRefused() {
        #expect(ShortLinkCode.decode("abc") == nil)
        #expect(ShortLinkCode.decode("0000000000000000-0") == nil)
        // 62^18 is more than 2^104: the largest 18-character numbers do not fit in 13 bytes.
        #expect(ShortLinkCode.decode(String(repeating: "z", count: 18)) == nil)
    }
}
