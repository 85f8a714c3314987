import Foundation
import Testing
import WireJSON

@Suite struct WireJSONTests {
    @Test func writtenStringsReadBackAsTheSameText() throws {
        let tricky = "Quote \" backslash \\ line\nbreak\ttab \u{01} café 🎟 </script>"
        var writer = JSONBytes()
        writer.object(["to": "ann@mail.example", "text": tricky])
        let value = try #require(JSONValue(parsing: writer.data))
        #expect(value["text"]?.string == tricky)
        #expect(value["to"]?.string == "ann@mail.example")
        let foundation = try #require(try JSONSerialization.jsonObject(with: writer.data) as? [String: String])
        #expect(foundation["text"] == tricky)
    }

    @Test func everyCharacterToEscapeIsFoundAtEveryPlaceOfAWord() throws {
        // The writer looks at eight bytes at a time: each escape, and bytes just past the ones it matches, at every
        // offset of texts from 0 to 40 bytes.
        let specials: [Character] = ["\"", "\\", "\n", "\u{00}", "\u{1F}", " ", "!", "#", "[", "]", "é", "\u{7F}"]
        for length in 0...40 {
            for position in 0..<max(length, 1) {
                for special in specials {
                    var characters = Array(repeating: Character("a"), count: length)
                    if position < length { characters[position] = special }
                    let text = String(characters)
                    var writer = JSONBytes()
                    writer.object(["text": text])
                    let decoded = try JSONSerialization.jsonObject(with: writer.data) as? [String: String]
                    #expect(decoded?["text"] == text, "length \(length), \(special) at \(position)")
                }
            }
        }
    }

    @Test func nestedObjectsAndArraysAreReachableByKeyAndIndex() throws {
        let body = Data(
            #"""
            {"personalizations": [{"to": [{"email": "a@x"}], "substitutions": {"-n-": "Ann"}},
                                  {"to": [{"email": "b@x"}]}],
             "count": 2, "sandbox": false, "note": null}
            """#.utf8
        )
        let value = try #require(JSONValue(parsing: body))
        let people = value["personalizations"]?.elements ?? []
        #expect(people.count == 2)
        #expect(people[0]["to"]?[0]?["email"]?.string == "a@x")
        #expect(people[0]["substitutions"]?.members.map(\.key) == ["-n-"])
        #expect(people[1]["substitutions"] == nil)
        #expect(value["count"] == .literal("2") && value["sandbox"] == .literal("false"))
        #expect(value["note"] == .literal("null"))
    }

    @Test func malformedTextsAreRefusedRatherThanHalfRead() {
        let texts = [
            "", "{", #"{"a": }"#, #"{"a": 1,}"#, "[1 2]", #"{"a": 1} x"#, "nan", "Infinity", "+1", #"{"a": tru}"#,
            String(repeating: "[", count: 200) + String(repeating: "]", count: 200),
        ]
        for text in texts {
            #expect(JSONValue(parsing: Data(text.utf8)) == nil, "accepted \(text.prefix(40))")
        }
    }

    @Test func escapedStringsAreUnescaped() throws {
        let value = try #require(JSONValue(parsing: Data(#"["a\"b\\c\nd\u00e9"]"#.utf8)))
        #expect(value[0]?.string == "a\"b\\c\nd\u{e9}")
    }

    @Test func topLevelFieldsAreFoundWithoutParsingTheRest() {
        let body = Data(#"{"nested": {"id": "inner"}, "id": "msg-1", "segments": 2}"#.utf8)
        #expect(JSONFields.value("id", in: body) == "msg-1")
        #expect(JSONFields.value("segments", in: body) == "2")
        #expect(JSONFields.value("nested", in: body) == nil)
        #expect(JSONFields.value("id", in: Data("not json".utf8)) == nil)
    }
}
