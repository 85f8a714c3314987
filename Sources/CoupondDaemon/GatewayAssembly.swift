import Curl
import Delivery
import Logging

extension Daemon {
    /// The dispatcher of one channel's gateway section, or `nil` when the section names no URL.
    ///
    /// - Throws: ``ConfigurationError`` naming the setting that is missing or does not fit the provider.
    static func dispatcher(
        _ gateway: Configuration.Gateway,
        channel: String,
        driver: CurlMultiDriver,
        logger: Logger
    ) throws -> GatewayDispatcher? {
        guard let url = gateway.url else { return nil }
        if gateway.provider == "smtp" {
            guard SMTPGateway.isSMTPURL(url) else {
                throw ConfigurationError(setting: "\(channel).url", reason: "must be an smtp:// or smtps:// URL")
            }
        } else {
            guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw ConfigurationError(setting: "\(channel).url", reason: "must be an http(s) URL")
            }
        }
        guard let from = gateway.from, !from.isEmpty else {
            throw ConfigurationError(setting: "\(channel).from", reason: "is required with \(channel).url")
        }
        guard let credentialFile = gateway.credentialFile else {
            throw ConfigurationError(
                setting: "\(channel).credential_file",
                reason: "is required with \(channel).url (or the systemd credential \(channel)-token)"
            )
        }
        if channel == "email" && !RecipientAddress.isPlainEmailAddress(from) {
            throw ConfigurationError(
                setting: "email.from",
                reason: "must be a plain email address, such as coupons@shop.example"
            )
        }
        let secretBytes = try secret(credentialFile, setting: "\(channel).credential_file")
        // It goes into a header or an SMTP command: a line break there would be a request of its own.
        guard !secretBytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            throw ConfigurationError(
                setting: "\(channel).credential_file",
                reason: "must hold one line without control characters"
            )
        }
        let credential = String(decoding: secretBytes, as: UTF8.self)
        let endpoint = GatewayEndpoint(
            url: url,
            credential: credential,
            from: from,
            connectTimeout: gateway.connectTimeout,
            totalTimeout: gateway.timeout
        )
        let api: any Delivery.Gateway
        switch (channel, gateway.provider) {
        case ("email", "webhook"): api = WebhookEmailGateway(endpoint: endpoint)
        case ("email", "sendgrid"): api = SendGridGateway(endpoint: endpoint)
        case ("email", "smtp"):
            guard ["required", "off"].contains(gateway.smtpStartTLS) else {
                throw ConfigurationError(setting: "email.smtp_starttls", reason: "must be required or off")
            }
            api = SMTPGateway(endpoint: endpoint, requireTLS: gateway.smtpStartTLS == "required")
        case ("sms", "webhook"): api = WebhookSMSGateway(endpoint: endpoint)
        case ("sms", "twilio"):
            guard let sid = gateway.accountSID, !sid.isEmpty else {
                throw ConfigurationError(setting: "sms.account_sid", reason: "is required with the twilio provider")
            }
            guard TwilioGateway.isAccountSID(sid) else {
                throw ConfigurationError(
                    setting: "sms.account_sid",
                    reason: "must be AC followed by 32 hexadecimal digits, as Twilio's console shows it"
                )
            }
            api = TwilioGateway(endpoint: endpoint, accountSID: sid)
        default:
            let known = channel == "email" ? "webhook, sendgrid or smtp" : "webhook or twilio"
            throw ConfigurationError(
                setting: "\(channel).provider",
                reason: "must be \(known), not \"\(gateway.provider)\""
            )
        }
        let perRequest = gateway.recipientsPerRequest
        if perRequest != 1 {
            guard let batch = api as? any BatchEmailGateway else {
                throw ConfigurationError(
                    setting: "\(channel).recipients_per_request",
                    reason: "must be 1 with the \(gateway.provider) provider (the email webhook and sendgrid take more)"
                )
            }
            guard (1...batch.maxRecipientsPerRequest).contains(perRequest) else {
                throw ConfigurationError(
                    setting: "\(channel).recipients_per_request",
                    reason: "must be between 1 and \(batch.maxRecipientsPerRequest)"
                )
            }
        }
        guard gateway.breakerFailures >= 1 else {
            throw ConfigurationError(setting: "\(channel).breaker_failures", reason: "must be at least 1")
        }
        guard let onUnknown = UnknownPolicy(rawValue: gateway.onUnknown) else {
            throw ConfigurationError(setting: "\(channel).on_unknown", reason: "must be resend or skip")
        }
        return GatewayDispatcher(
            gateway: api,
            driver: driver,
            retry: RetryPolicy(maxAttempts: gateway.maxAttempts, budget: gateway.retryBudget),
            ratePerSecond: gateway.ratePerSecond,
            recipientsPerRequest: perRequest,
            onUnknown: onUnknown,
            lookupDelay: gateway.reconcileAfter,
            breakerThreshold: gateway.breakerFailures,
            logger: logger
        )
    }
}
