import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Why an allocation plan exceeds the memory this process may use, or why a memory limit is malformed.
public enum MemoryBudgetError: Error, Equatable, CustomStringConvertible, LocalizedError {
  /// `what` needs `neededBytes`, more than the `limitBytes` allowed.
  case exceeded(what: String, neededBytes: Int, limitBytes: Int)
  /// A memory-limit text (flag or environment variable `source`) could not be read.
  case invalidLimit(source: String, text: String)

  public var description: String {
    switch self {
    case .exceeded(let what, let needed, let limit):
      return "\(what) needs about \(MemoryBudget.format(bytes: needed)), more than the "
        + "\(MemoryBudget.format(bytes: limit)) this process may use; make it smaller, or raise the limit with "
        + "--memory-limit or the environment variable \(MemoryBudget.environmentVariable) (e.g. 16G; at most the "
        + "\(MemoryBudget.format(bytes: MemoryBudget.availableBytes)) available)"
    case .invalidLimit(let source, let text):
      return "\(source): '\(text)' is not a memory size; use a positive number of bytes with an optional suffix "
        + "K, M, G or T (powers of 1024), e.g. 8G, between \(MemoryBudget.format(bytes: MemoryBudget.minimumLimit)) "
        + "and the \(MemoryBudget.format(bytes: MemoryBudget.availableBytes)) available"
    }
  }

  public var errorDescription: String? { description }
}

/// The memory this process may really use, and the limit that plans (model size, a training step's
/// activations) are checked against *before* anything is allocated.
///
/// Available memory = min(physical memory, cgroup v2 `memory.max` / v1 `memory.limit_in_bytes`,
/// `RLIMIT_AS`). The default limit is ``defaultFraction`` (80%) of it, leaving room for the rest of
/// the process (code, Foundation, the pooled blocks of the allocator). It can be overridden with the
/// environment variable `QUADRANET_MEMORY_LIMIT` or the CLI's `--memory-limit` (e.g. `8G`), up to the
/// available memory.
public enum MemoryBudget {
  /// The environment variable that overrides the default limit (e.g. `QUADRANET_MEMORY_LIMIT=8G`).
  public static let environmentVariable = "QUADRANET_MEMORY_LIMIT"
  /// The share of the available memory that the default limit allows.
  public static let defaultFraction = 0.8
  /// The smallest limit accepted (64 MiB): less cannot even hold the datasets.
  public static let minimumLimit = 64 << 20

  /// Bytes this process may use at most: min(physical, cgroup limit, RLIMIT_AS).
  public static let availableBytes: Int = {
    var result = Int(clamping: ProcessInfo.processInfo.physicalMemory)
    for limit in [cgroupLimit(), addressSpaceLimit()] {
      if let limit, limit > 0 { result = Swift.min(result, limit) }
    }
    return Swift.max(result, minimumLimit)
  }()

  private static let override = Mutex<Int?>(nil)
  @TaskLocal private static var scopedLimit: Int?

  /// The limit plans are checked against: a ``withLimit(_:_:)`` scope's, else an explicit
  /// ``setLimit(_:)``, else `QUADRANET_MEMORY_LIMIT`, else ``defaultFraction`` of ``availableBytes``.
  /// A malformed environment variable is reported by ``checkEnvironment()`` and otherwise ignored.
  public static var limitBytes: Int {
    if let scoped = scopedLimit { return scoped }
    if let explicit = override.withLock({ $0 }) { return explicit }
    if let text = ProcessInfo.processInfo.environment[environmentVariable],
      let value = try? parseLimit(text, source: environmentVariable)
    {
      return value
    }
    return Int(Double(availableBytes) * defaultFraction)
  }

  /// Sets the process-wide limit (the CLI's `--memory-limit`); `nil` restores the default.
  public static func setLimit(_ bytes: Int?) {
    override.withLock { $0 = bytes }
  }

  /// Runs `body` with the limit set to `bytes` for the current task and its children only
  /// (other tasks, e.g. concurrently running tests, keep theirs).
  public static func withLimit<R>(_ bytes: Int, _ body: () throws -> R) rethrows -> R {
    try $scopedLimit.withValue(bytes, operation: body)
  }

  /// Throws if `QUADRANET_MEMORY_LIMIT` is set but malformed or out of range.
  public static func checkEnvironment() throws {
    if let text = ProcessInfo.processInfo.environment[environmentVariable] {
      _ = try parseLimit(text, source: environmentVariable)
    }
  }

  /// Parses a size like `8G`, `512M`, `1.5G` or `1073741824` (suffixes K, M, G, T are powers of 1024,
  /// an optional trailing `B` or `iB` is accepted) and checks it is in
  /// `minimumLimit...availableBytes`; `source` names the flag or variable in errors.
  public static func parseLimit(_ text: String, source: String) throws -> Int {
    let fail = MemoryBudgetError.invalidLimit(source: source, text: String(text.prefix(64)))
    var body = text.trimmingCharacters(in: .whitespaces).uppercased()
    guard body.count <= 32 else { throw fail }
    if body.hasSuffix("IB") { body.removeLast(2) } else if body.hasSuffix("B") { body.removeLast() }
    var multiplier = 1.0
    if let last = body.last, let power = ["K": 1, "M": 2, "G": 3, "T": 4][String(last)] {
      multiplier = pow(1024, Double(power))
      body.removeLast()
    }
    guard !body.isEmpty, body.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
      let number = Double(body), number.isFinite, number > 0
    else { throw fail }
    let bytes = number * multiplier
    guard bytes >= Double(minimumLimit), bytes <= Double(availableBytes) else { throw fail }
    return Int(bytes)
  }

  /// Throws ``MemoryBudgetError/exceeded(what:neededBytes:limitBytes:)`` when `bytes` is over ``limitBytes``.
  /// `what` describes the plan for the message (e.g. "model quadranet-t (28M parameters) with gradients and AdamW moments").
  public static func check(_ bytes: Int, for what: String) throws {
    let limit = limitBytes
    guard bytes <= limit else { throw MemoryBudgetError.exceeded(what: what, neededBytes: bytes, limitBytes: limit) }
  }

  /// `bytes` in binary units with one decimal (e.g. "6.0 GiB").
  public static func format(bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
      value /= 1024
      unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
  }

  /// The cgroup v2 `memory.max` or v1 `memory.limit_in_bytes` of this process, if limited.
  static func cgroupLimit() -> Int? {
    for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
      guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
      // "max" (v2) or a huge page-rounded number (v1) mean unlimited; Int() rejects the former.
      if let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > 0, value < Int.max / 2 {
        return value
      }
    }
    return nil
  }

  /// The soft `RLIMIT_AS` (address-space limit, `ulimit -v`), if set.
  static func addressSpaceLimit() -> Int? {
    var limit = rlimit()
    #if canImport(Glibc)
      let resource = __rlimit_resource_t(RLIMIT_AS.rawValue)
    #else
      let resource = RLIMIT_AS
    #endif
    // RLIM_INFINITY is all ones (Linux) or 2^63 − 1 (Darwin): both are at least Int.max.
    guard getrlimit(resource, &limit) == 0, limit.rlim_cur < rlim_t(Int.max) else { return nil }
    return Int(clamping: limit.rlim_cur)
  }
}
