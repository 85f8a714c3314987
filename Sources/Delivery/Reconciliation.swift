public import Curl
public import Foundation
import WireJSON

/// What identifies one message in its provider's records: where it went, a text only it contains, and a moment
/// before it was first sent.
public struct DeliveryProbe: Sendable, Equatable {
    /// The recipient's address or number.
    public var to: String
    /// A text the message contains and no other does, for example the customer's claim token.
    public var marker: String
    /// No earlier than the message's first attempt.
    public var since: Date

    public init(to: String, marker: String, since: Date) {
        self.to = to
        self.marker = marker
        self.since = since
    }
}

/// What a provider's records say about a message.
public enum LookupVerdict: Sendable, Equatable {
    case found(messageID: String?)
    case notFound
    /// The records go on at this URL.
    case nextPage(url: String)
    /// The answer could not be read or was an error: ask again later.
    case unavailable(detail: String)
}

/// A gateway whose own records say whether a message went out, so that a message whose request may have reached it
/// is looked up there before it is sent again.
public protocol ReconcilingGateway: Gateway {
    /// The request for the provider's records of messages to `probe.to` since `probe.since`.
    func lookupRequest(for probe: DeliveryProbe) -> HTTPRequest
    /// A request for a further page named by ``LookupVerdict/nextPage(url:)``.
    func lookupRequest(page url: String) -> HTTPRequest
    /// Whether the records in `response` hold a message containing `probe.marker`.
    func lookupVerdict(for response: HTTPResponse, probe: DeliveryProbe) -> LookupVerdict
}

extension TwilioGateway: ReconcilingGateway {
    /// `GET /2010-04-01/Accounts/{AccountSid}/Messages.json?To=…`: Twilio's list of the account's messages to the
    /// number, newest first.
    ///
    /// No `DateSent>=` filter: a message Twilio has accepted but not yet sent has no send date, and would be missed
    /// (then sent a second time). Pages are read back to the probe's `since` instead.
    ///
    /// Related documentation: https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources
    public func lookupRequest(for probe: DeliveryProbe) -> HTTPRequest {
        listRequest(url: "\(messagesURL)?To=\(Self.formEncode(probe.to))&PageSize=1000")
    }

    public func lookupRequest(page url: String) -> HTTPRequest {
        // Twilio names further pages by a path on its API host.
        listRequest(url: url.hasPrefix("/") ? apiBase + url : url)
    }

    public func lookupVerdict(for response: HTTPResponse, probe: DeliveryProbe) -> LookupVerdict {
        guard (200..<300).contains(response.status) else {
            return .unavailable(detail: "HTTP \(response.status) from \(name) message list")
        }
        guard let list = JSONValue(parsing: response.body), case .array(let messages)? = list["messages"] else {
            return .unavailable(detail: "unreadable message list from \(name)")
        }
        for message in messages where message["to"]?.string == probe.to {
            if message["body"]?.string?.contains(probe.marker) == true {
                return .found(messageID: message["sid"]?.string)
            }
        }
        // Older pages cannot hold a message first sent after `since`.
        let oldest = messages.last?["date_created"]?.string.flatMap(Self.rfc2822Date)
        if let next = list["next_page_uri"]?.string, !next.isEmpty, oldest.map({ $0 >= probe.since }) ?? true {
            return .nextPage(url: next)
        }
        return .notFound
    }

    /// Twilio's dates, for example `Sat, 28 Nov 2026 13:00:00 +0000`.
    static func rfc2822Date(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return formatter.date(from: text)
    }

    private func listRequest(url: String) -> HTTPRequest {
        HTTPRequest(
            method: "GET",
            url: url,
            headers: [("Authorization", "Basic \(basicCredential)")],
            body: nil,
            connectTimeout: endpoint.connectTimeout,
            totalTimeout: endpoint.totalTimeout
        )
    }
}
