public import Foundation
public import Messages

/// How the engine paces itself.
public struct EngineSettings: Sendable {
    /// This instance's name in `sends.lease_owner`; unique per running process.
    public var instanceName: String
    /// Seconds between polls for due sends when no notification arrives.
    public var pollInterval: Double
    /// Seconds a lease lasts without renewal; another instance takes over a send after that.
    public var leaseSeconds: Double
    /// Recipients read, prepared and recorded together.
    public var batchSize: Int
    /// Batches of one send whose messages may be out at once; bounds memory to this times `batchSize`.
    public var batchesInFlight: Int
    /// Sends worked on at once by this instance (each with its own database connection).
    public var maxConcurrentSends: Int
    /// Threads that prepare claim links and render messages for a batch.
    public var preparationThreads: Int
    /// Price of one SMS segment in the shop's currency, for the cost recorded per message.
    public var smsPricePerSegment: Decimal?
    /// Seconds a graceful shutdown waits for in-flight messages before giving the rest back.
    public var shutdownGrace: Double
    /// Times a send may be taken up (by any instance) before it is failed with `system_error` as one that cannot go
    /// out: a send whose work keeps ending in errors that may pass is otherwise taken up again forever.
    public var maxSendAttempts: Int
    /// Whether the scheduler listens for `NOTIFY coupond_sends`; without it the engine polls only and keeps no state
    /// in its database sessions, so that it can run behind a transaction-pooling proxy.
    public var listen: Bool
    /// The channels whose messages carry short links (served by the HTTP listener); `nil` for full links only.
    public var shortLinks: ShortLinks?

    public init(
        instanceName: String,
        pollInterval: Double = 5,
        leaseSeconds: Double = 30,
        batchSize: Int = 500,
        batchesInFlight: Int = 4,
        maxConcurrentSends: Int = 4,
        preparationThreads: Int = ProcessInfo.processInfo.activeProcessorCount,
        smsPricePerSegment: Decimal? = nil,
        shutdownGrace: Double = 10,
        maxSendAttempts: Int = 20,
        listen: Bool = true,
        shortLinks: ShortLinks? = nil
    ) {
        self.instanceName = instanceName
        self.pollInterval = pollInterval
        self.leaseSeconds = leaseSeconds
        self.batchSize = batchSize
        self.batchesInFlight = max(1, batchesInFlight)
        self.maxConcurrentSends = maxConcurrentSends
        self.preparationThreads = preparationThreads
        self.smsPricePerSegment = smsPricePerSegment
        self.shutdownGrace = shutdownGrace
        self.maxSendAttempts = max(1, maxSendAttempts)
        self.listen = listen
        self.shortLinks = shortLinks
    }
}
