// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "coupond",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "coupond", targets: ["coupond"]),
        // The gateway simulator, for tests, the demo and benchmarks; not part of what is installed.
        .executable(name: "coupond-gateway-sim", targets: ["coupond-gateway-sim"]),
    ],
    dependencies: [
        // Command tree, validation errors and exit codes.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // Structured logging; the journal handler plugs into it.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Operator-editable message templates with HTML escaping.
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        // Event-loop HTTP server for the gateway simulator, fast enough to stay ahead of the daemon it tests.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // SHA-256 and HMAC for claim tokens and signed report links.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // The daemon's HTTP endpoints (reports, claims, health): routing, streaming bodies and graceful shutdown on
        // the NIO the simulator already uses.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        // Hummingbird's HTTP/1 codec type, before which the listener's connection guard sits (already in the graph
        // through Hummingbird).
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        // The service group the listener runs in, so that a stop is a graceful shutdown (already in the graph through
        // Hummingbird).
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Counters, timers and gauges in the engine (the metrics API Hummingbird already uses), exported in the
        // Prometheus text format at /metrics.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(
            name: "Postgres",
            dependencies: ["CLibPQ"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Curl",
            dependencies: ["CCurl"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "WireJSON",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Storage",
            dependencies: [
                "Postgres",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Messages",
            dependencies: [
                "WireJSON",
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Signing",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Delivery",
            dependencies: [
                "Curl", "Messages", "WireJSON", .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Systemd",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GatewaySimulator",
            dependencies: [
                "WireJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Engine",
            dependencies: [
                "Storage", "Delivery", "Messages", "Signing", "Postgres", "Curl",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "HTTPEndpoints",
            dependencies: [
                "Storage", "Signing", "Postgres", "Messages",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        // The composition root of `coupond run` and the configuration, which tests import.
        .target(
            name: "CoupondDaemon",
            dependencies: [
                "Storage", "Messages", "Postgres", "Engine", "Delivery", "Curl", "Signing", "Systemd", "HTTPEndpoints",
                "WireJSON",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The command line: argument parsing and the output of each command.
        .executableTarget(
            name: "coupond",
            dependencies: [
                "CoupondDaemon", "Storage", "Messages", "Postgres", "Signing", "Systemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "coupond-gateway-sim",
            dependencies: ["GatewaySimulator", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TestSupport",
            dependencies: ["Postgres", "Storage", "Curl"],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresTests",
            dependencies: ["Postgres", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CurlTests",
            dependencies: ["Curl", "GatewaySimulator"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StorageTests",
            dependencies: ["Storage", "Postgres", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MessagesTests",
            dependencies: ["Messages", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WireJSONTests",
            dependencies: ["WireJSON"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DeliveryTests",
            dependencies: ["Delivery", "Curl", "Signing", .product(name: "Crypto", package: "swift-crypto")],
            // Extracts of the providers' API descriptions, read by path.
            exclude: ["ProviderSpecs"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SystemdTests",
            dependencies: ["Systemd", "TestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EngineTests",
            dependencies: [
                "coupond", "coupond-gateway-sim", "Curl", "Delivery", "Messages", "Postgres", "Signing", "Storage",
                "TestSupport",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CoupondDaemonTests",
            dependencies: ["CoupondDaemon", "HTTPEndpoints", "Messages", "Postgres", "Storage"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CLITests",
            dependencies: ["coupond", "Postgres", "Storage", "TestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
