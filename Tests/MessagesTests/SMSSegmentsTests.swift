import Messages
import Testing

@Suite struct SMSSegmentsTests {
    @Test(arguments: [(0, 1), (160, 1), (161, 2), (306, 2), (307, 3)])
    func gsm7Boundaries(length: Int, segments: Int) {
        let sms = SMSSegments(text: String(repeating: "a", count: length))
        #expect(sms.encoding == .gsm7)
        #expect(sms.count == segments)
    }

    @Test func extensionCharactersTakeTwoSeptets() {
        let sms = SMSSegments(text: String(repeating: "a", count: 158) + "€")
        #expect(sms.encoding == .gsm7)
        #expect(sms.units == 160)
        #expect(sms.count == 1)
        #expect(SMSSegments(text: String(repeating: "a", count: 159) + "{").count == 2)
    }

    @Test(arguments: [(70, 1), (71, 2), (134, 2), (135, 3)])
    func ucs2Boundaries(length: Int, segments: Int) {
        let sms = SMSSegments(text: "ł" + String(repeating: "a", count: length - 1))
        #expect(sms.encoding == .ucs2)
        #expect(sms.count == segments)
    }

    @Test func emojiCountAsTwoUTF16Units() {
        let sms = SMSSegments(text: "🎟")
        #expect(sms.encoding == .ucs2)
        #expect(sms.units == 2)
    }
}
