import Crypto
import Foundation

/// Twilio's signature of a webhook request (`X-Twilio-Signature`): HMAC-SHA1, keyed with the account's auth token, of
/// the URL Twilio called followed by each POST parameter's name and value, sorted by name; in base64.
public enum TwilioRequestSignature {
    public static func signature(url: String, parameters: [(name: String, value: String)], authToken: String) -> String
    {
        var signed = url
        for parameter in parameters.sorted(by: { $0.name < $1.name }) { signed += parameter.name + parameter.value }
        let code = HMAC<Insecure.SHA1>.authenticationCode(
            for: Data(signed.utf8),
            using: SymmetricKey(data: Data(authToken.utf8))
        )
        return Data(code).base64EncodedString()
    }

    /// Whether `presented` is the signature of the request, compared in constant time.
    public static func isValid(
        _ presented: String,
        url: String,
        parameters: [(name: String, value: String)],
        authToken: String
    ) -> Bool {
        let expected = signature(url: url, parameters: parameters, authToken: authToken)
        return ConstantTime.equal(Array(expected.utf8), Array(presented.utf8))
    }
}
