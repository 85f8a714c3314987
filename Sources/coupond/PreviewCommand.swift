import ArgumentParser
import CoupondDaemon
import Foundation
import Messages
import Postgres
import Signing
import Storage

struct PreviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preview",
        abstract: "Shows what a customer will receive: email subject, HTML and text parts, and the SMS.",
        discussion: """
            Renders the operator's templates for a sample member of the group (the first one, or --customer), and \
            prints the sample SMS's encoding (GSM-7 or UCS-2) and segments. The SMS cost is exact: every member SMS \
            can reach is counted with their own name, link and locale (coupond.sms_estimate), at \
            sms.price_per_segment from the configuration (or COUPOND_SMS_PRICE_PER_SEGMENT), in the shop's currency. \
            --json also prints sms_shape, what a send's sms_shape column takes to hold an sms_budget to.

            coupond preview --shop 1 --group 7 --coupon 3
            coupond preview --send 42 --json
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Preview an existing send.") var send: Int64?
    @Option(help: "Shop id (without --send).") var shop: Int64?
    @Option(help: "Customer group id (without --send).") var group: Int64?
    @Option(help: "Coupon id (without --send).") var coupon: Int64?
    @Option(help: "Sample customer id; default: the group's first member.") var customer: Int64?
    @Option(help: ArgumentHelp("Template folder; overrides the configuration.", valueName: "path"))
    var templates: String?

    @Option(
        help: ArgumentHelp(
            "Render in this locale's templates (templates/<locale>/); default: the sample customer's, then the shop's.",
            valueName: "locale"
        )
    )
    var locale: String?

    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        let direct = [shop, group, coupon].compactMap { $0 }.count
        guard (send != nil && direct == 0) || (send == nil && direct == 3) else {
            throw ValidationError("give --send, or all of --shop, --group and --coupon")
        }
    }

    struct Output: Encodable {
        var customerID: Int64?
        var emailSubject: String
        var emailHtml: String
        var emailText: String
        var smsText: String
        var smsEncoding: String
        var smsCharacters: Int
        var smsSegments: Int
        var smsPricePerSegment: Decimal?
        var smsFeePerMessage: Decimal?
        /// Customers the SMS would go to, and their segments counted one by one.
        var smsRecipients: Int
        var smsSegmentsTotal: Int
        var smsRecipientsBySegments: [String: Int]
        /// The exact cost: every recipient's segments at the price per segment.
        var smsEstimatedFee: Decimal?
        var smsShape: SMSShape?
        var currency: String
        /// The locale whose templates rendered it; `nil` for the default ones.
        var locale: String?
    }

    func run() throws {
        try reportingFailures {
            let configuration = try global.loadConfiguration()
            let templateDirectory = templates.map { URL(fileURLWithPath: $0) } ?? configuration.templatesDirectory
            let messageTemplates: LocalizedTemplates
            do {
                messageTemplates = try LocalizedTemplates(
                    directory: templateDirectory,
                    defaultLanguage: configuration.templatesLanguage
                )
            } catch let error as TemplateError {
                throw CommandFailure(.config, error.description)
            }
            let connection = try global.connect(configuration)
            defer { connection.close() }
            var ids = (shop: shop ?? 0, group: group ?? 0, coupon: coupon ?? 0)
            if let send {
                guard let summary = try SendStore(connection: connection).send(id: send) else {
                    throw CommandFailure(.notFound, "send \(send) does not exist")
                }
                ids = (summary.shopID, summary.groupID, summary.couponID)
            }
            let source = try PreviewSource.load(
                on: connection,
                shopID: ids.shop,
                groupID: ids.group,
                couponID: ids.coupon,
                customerID: customer
            )
            var output = Self.render(
                source,
                templates: messageTemplates,
                price: configuration.smsPricePerSegment,
                shortLinks: configuration.shortLinks,
                unsubscribeBaseURL: configuration.publicBaseURL,
                sendID: send,
                locale: locale
            )
            if let shape = Self.smsShape(
                source,
                templates: messageTemplates,
                price: configuration.smsPricePerSegment,
                shortLinks: configuration.shortLinks
            ) {
                let estimate = try SMSEstimate.load(
                    on: connection,
                    shopID: ids.shop,
                    groupID: ids.group,
                    sendID: send,
                    shape: shape.json
                )
                output.smsShape = shape
                output.smsRecipients = estimate.recipients
                output.smsSegmentsTotal = estimate.segments
                output.smsRecipientsBySegments = estimate.recipientsBySegments
                output.smsEstimatedFee = configuration.smsPricePerSegment.map { $0 * Decimal(estimate.segments) }
            }
            print(json ? OutputFormat.json(output) : text(output))
            if SMSSegments.isTooLong(output.smsText) {
                throw CommandFailure(.refused, Self.tooLong(characters: output.smsText.unicodeScalars.count))
            }
        }
    }

    /// Why an SMS this long cannot be sent, and what to change.
    static func tooLong(characters: Int) -> String {
        "the SMS is \(characters) characters, more than the \(SMSSegments.maxCharacters) providers take: shorten "
            + "templates' sms.mustache or the coupon's title and description"
    }

    /// What a customer of `source` receives, with a sample claim link of the real length: the short link's on a
    /// channel that would use one.
    static func render(
        _ source: PreviewSource,
        templates: LocalizedTemplates,
        price: Decimal?,
        shortLinks: ShortLinks?,
        unsubscribeBaseURL: String? = nil,
        sendID: Int64? = nil,
        locale requested: String? = nil
    ) -> Output {
        // The locale asked for, else the one the send would choose for this customer.
        let locale = templates.locale(
            customer: requested ?? source.customerLocale,
            shop: requested ?? source.shopLocale
        )
        // A sample token of the real length, so the SMS segment count matches what customers will get.
        let sampleToken = String(repeating: "x", count: 43)
        let campaign = ClaimLink.campaign(couponID: source.couponID)
        let sampleCode = String(repeating: "x", count: ShortLinkCode.length)
        func link(_ channel: Channel) -> String {
            shortLinks?.link(channel, code: sampleCode)
                ?? ClaimLink.make(loginURL: source.loginURL, token: sampleToken, channel: channel, campaign: campaign)
                ?? source.loginURL
        }
        var context = source.messageContext
        context.customerName = source.customerName
        context.emailLink = link(.email)
        context.smsLink = link(.sms)
        context.unsubscribeLink =
            unsubscribeBaseURL.map {
                UnsubscribeLinks.sample(baseURL: $0, sendID: sendID ?? 0, customerID: source.customerID ?? 0)
            } ?? ""
        let message = templates.templates(locale).render(context)
        let perMessage = price.map { $0 * Decimal(message.smsSegments.count) }
        return Output(
            customerID: source.customerID,
            emailSubject: message.emailSubject,
            emailHtml: message.emailHTML,
            emailText: message.emailText,
            smsText: message.smsText,
            smsEncoding: message.smsSegments.encoding.rawValue,
            smsCharacters: message.smsSegments.units,
            smsSegments: message.smsSegments.count,
            smsPricePerSegment: price,
            smsFeePerMessage: perMessage,
            smsRecipients: source.smsReachableCount,
            smsSegmentsTotal: message.smsSegments.count * source.smsReachableCount,
            smsRecipientsBySegments: [:],
            smsEstimatedFee: perMessage.map { $0 * Decimal(source.smsReachableCount) },
            smsShape: nil,
            currency: source.currency,
            locale: locale
        )
    }

    /// The send's SMS with markers for each customer's name and link, which `coupond.sms_estimate` renders for every
    /// member; `nil` when the shop's login URL makes no link.
    static func smsShape(
        _ source: PreviewSource,
        templates: LocalizedTemplates,
        price: Decimal?,
        shortLinks: ShortLinks?
    ) -> SMSShape? {
        let claimLinks = ClaimLink.Template(
            loginURL: source.loginURL,
            channel: .sms,
            campaign: ClaimLink.campaign(couponID: source.couponID)
        )
        guard let link = SMSShape.link(shortLinks: shortLinks, claimLinks: claimLinks) else { return nil }
        return SMSShape(message: templates.prepare(source.messageContext), link: link, pricePerSegment: price)
    }

    private func text(_ output: Output) -> String {
        let counts = output.smsRecipientsBySegments.sorted { Int($0.key) ?? 0 < Int($1.key) ?? 0 }
            .map { $0.key == "0" ? "\($0.value) too long to send" : "\($0.value) with \($0.key) segment(s)" }
            .joined(separator: ", ")
        let customers = "\(output.smsRecipients) customers with a mobile number and SMS consent"
        let fee: String
        if let total = output.smsEstimatedFee, let price = output.smsPricePerSegment {
            fee =
                "\(total) \(output.currency) for \(customers): \(output.smsSegmentsTotal) segments at \(price) "
                + "\(output.currency)\(counts.isEmpty ? "" : " (\(counts))")"
        } else {
            fee =
                "unknown (set sms.price_per_segment in the configuration): \(output.smsSegmentsTotal) segments for "
                + customers
        }
        return """
            Sample customer: \(output.customerID.map(String.init) ?? "none (the group is empty)")
            Templates: \(output.locale.map { "templates/\($0)/" } ?? "the default ones")

            == Email subject ==
            \(output.emailSubject)

            == Email, HTML part ==
            \(output.emailHtml)
            == Email, text part ==
            \(output.emailText)
            == SMS ==
            \(output.smsText)

            Encoding: \(output.smsEncoding), \(output.smsCharacters) characters, \(output.smsSegments) segment(s)
            SMS cost, exact: \(fee)
            """
    }
}

extension PreviewSource {
    /// The send's values as the engine renders them, without a customer or links: the same shop, coupon, end time
    /// format and address, so that a preview shows what goes out.
    var messageContext: MessageContext {
        MessageContext(
            shopName: shopName,
            customerName: nil,
            couponTitle: couponTitle,
            couponDescription: couponDescription,
            couponEndsAt: couponEndsAt.map { ShopTime.format($0, timeZone: timeZone) },
            emailLink: "",
            smsLink: "",
            shopPostalAddress: shopPostalAddress ?? ""
        )
    }
}
