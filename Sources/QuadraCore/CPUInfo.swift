import CQuadraTarget
import Foundation

/// What the kernels need to know about the processor: its widest vector ISA and its data-cache sizes.
///
/// Read once per process from Linux's `/proc/cpuinfo` (the `flags` line of the first processor) and
/// `/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}`. Where those files are missing
/// (other systems, containers that hide `/sys`) or unreadable, the fields fall back to
/// ``fallback``: conservative sizes of current x86 cores and no vector ISA beyond the baseline,
/// so the kernels still run, with smaller blocks and the portable micro-kernel.
///
/// ``vectorISA`` says what the *processor* can do; ``buildVectorISA`` what the *build* may use (the root
/// package is compiled with `-target-cpu native`, or the CPU `QUADRANET_TARGET_CPU` names; the portable
/// build targets baseline x86-64). The kernels choose their register tiles by ``kernelVectorISA``, the
/// lower of the two: a `znver3` (AVX2) build run on an AVX-512 machine has 16 vector registers, not 32.
public struct CPUInfo: Sendable, Equatable, CustomStringConvertible {
  /// The widest vector instruction set the processor reports, in increasing order.
  public enum VectorISA: Int, Sendable, Comparable, CustomStringConvertible {
    /// SSE2 only (every x86-64 processor), or a processor this code does not recognize.
    case baseline
    /// 256-bit AVX2 with fused multiply-add: 16 `ymm` registers.
    case avx2
    /// 512-bit AVX-512F (with AVX2 and FMA): 32 `zmm` registers.
    case avx512

    public static func < (lhs: VectorISA, rhs: VectorISA) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
      switch self {
      case .baseline: "baseline"
      case .avx2: "avx2"
      case .avx512: "avx512"
      }
    }

    /// Float lanes of one vector register of this ISA (4 for the SSE baseline).
    public var floatLanes: Int {
      switch self {
      case .baseline: 4
      case .avx2: 8
      case .avx512: 16
      }
    }
  }

  /// The widest vector ISA of the processor (AVX2 and AVX-512 only count together with FMA).
  public var vectorISA: VectorISA

  /// The widest vector ISA this binary was compiled for (Clang's feature macros for the build's target CPU).
  public static let buildVectorISA: VectorISA = VectorISA(rawValue: Int(quadra_build_vector_isa())) ?? .baseline

  /// The ISA the kernels use: the processor's, but no wider than the build's.
  public var kernelVectorISA: VectorISA { Swift.min(vectorISA, Self.buildVectorISA) }
  /// Size of one core's level-1 data cache, in bytes.
  public var level1DataCacheBytes: Int
  /// Size of one core's level-2 cache, in bytes.
  public var level2CacheBytes: Int
  /// Size of the level-3 cache (shared by several cores), in bytes; the level-2 size where there is none.
  public var level3CacheBytes: Int
  /// Whether a 512-bit multiply-add costs no more than a 256-bit one: the core has full-width 512-bit FMA
  /// pipes (Intel's AVX-512 cores, AMD from Zen 5, family 26), instead of splitting each 512-bit operation
  /// into two 256-bit halves (Zen 4, family 25). Only meaningful with ``VectorISA/avx512``; read from the
  /// vendor and family, since no CPUID bit tells (see ``fullWidthVectors(cpuinfo:)``).
  public var fullWidth512: Bool

  public init(
    vectorISA: VectorISA, level1DataCacheBytes: Int, level2CacheBytes: Int, level3CacheBytes: Int,
    fullWidth512: Bool = false
  ) {
    self.vectorISA = vectorISA
    self.level1DataCacheBytes = level1DataCacheBytes
    self.level2CacheBytes = level2CacheBytes
    self.level3CacheBytes = level3CacheBytes
    self.fullWidth512 = fullWidth512
  }

  /// Used for whatever cannot be read: 32 KiB L1d, 512 KiB L2 and 8 MiB L3, no wide vectors.
  public static let fallback = CPUInfo(
    vectorISA: .baseline, level1DataCacheBytes: 32 << 10, level2CacheBytes: 512 << 10, level3CacheBytes: 8 << 20)

  /// This machine, detected on first use and then cached for the life of the process.
  public static let current: CPUInfo = detect()

  public var description: String {
    let width = vectorISA >= .avx512 ? (fullWidth512 ? " (full-width 512-bit FMA)" : " (512-bit FMA in two halves)") : ""
    let kernels = kernelVectorISA == vectorISA ? "" : " (kernels \(kernelVectorISA): this build's)"
    return "\(vectorISA)\(width)\(kernels), L1d \(level1DataCacheBytes >> 10) KiB, L2 \(level2CacheBytes >> 10) KiB, "
      + "L3 \(level3CacheBytes >> 10) KiB"
  }

  /// Reads the processor's flags and cache sizes below `root` (`/` on a real machine; a test
  /// passes a directory laid out like `/proc` and `/sys`).
  static func detect(root: String = "/") -> CPUInfo {
    var info = fallback
    if let text = readPrefix(root + "proc/cpuinfo", maximumBytes: 1 << 16) {
      info.vectorISA = vectorISA(cpuinfo: text)
      info.fullWidth512 = info.vectorISA >= .avx512 && fullWidthVectors(cpuinfo: text)
    }
    let sizes = cacheSizes(directory: root + "sys/devices/system/cpu/cpu0/cache")
    if let l1 = sizes.l1 { info.level1DataCacheBytes = l1 }
    if let l2 = sizes.l2 { info.level2CacheBytes = l2 }
    if let l3 = sizes.l3 {
      info.level3CacheBytes = l3
    } else if let l2 = sizes.l2 {
      info.level3CacheBytes = l2
    }
    return info
  }

  /// The ISA named by the first `flags` line of `/proc/cpuinfo` text.
  static func vectorISA(cpuinfo text: String) -> VectorISA {
    guard
      let line = text.split(separator: "\n").first(where: {
        $0.hasPrefix("flags") && $0.contains(":")
      })
    else { return .baseline }
    let flags = Set(line.split(separator: ":", maxSplits: 1)[1].split(separator: " ").map(String.init))
    guard flags.contains("avx2"), flags.contains("fma") else { return .baseline }
    return flags.contains("avx512f") ? .avx512 : .avx2
  }

  /// Whether the first processor of `/proc/cpuinfo` text has full-width 512-bit FMA pipes, by its vendor and
  /// family: every Intel core (`GenuineIntel`) with AVX-512 executes a 512-bit FMA as one operation, AMD's
  /// from family 26 (Zen 5) on; AMD's family 25 (Zen 4) splits it into two 256-bit halves. The exceptions
  /// this misjudges (Intel server parts with a single 512-bit FMA port, Zen 5's mobile parts) lose at most
  /// the zero lanes of a part-filled 16-lane block; `QUADRANET_DEPTHWISE_LANES` overrides the choice.
  static func fullWidthVectors(cpuinfo text: String) -> Bool {
    func field(_ name: String) -> String? {
      guard
        let line = text.split(separator: "\n").first(where: {
          $0.hasPrefix(name) && $0.split(separator: ":", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces) == name
        })
      else { return nil }
      let parts = line.split(separator: ":", maxSplits: 1)
      return parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespaces) : nil
    }
    switch field("vendor_id") {
    case "GenuineIntel": return true
    case "AuthenticAMD": return field("cpu family").flatMap { Int($0) }.map { $0 >= 26 } ?? false
    default: return false
    }
  }

  /// The level-1 data, level-2 and level-3 sizes listed in a sysfs `cache` directory (nil where absent).
  static func cacheSizes(directory: String) -> (l1: Int?, l2: Int?, l3: Int?) {
    var result: (l1: Int?, l2: Int?, l3: Int?) = (nil, nil, nil)
    // Linux numbers the entries from index0 without gaps; 16 is far more than any processor has.
    for index in 0..<16 {
      let entry = directory + "/index\(index)/"
      guard let levelText = readPrefix(entry + "level", maximumBytes: 64),
        let typeText = readPrefix(entry + "type", maximumBytes: 64),
        let sizeText = readPrefix(entry + "size", maximumBytes: 64)
      else { break }
      let type = typeText.trimmingCharacters(in: .whitespacesAndNewlines)
      guard type == "Data" || type == "Unified", let bytes = cacheBytes(sizeText) else { continue }
      switch Int(levelText.trimmingCharacters(in: .whitespacesAndNewlines)) {
      case 1: result.l1 = bytes
      case 2: result.l2 = bytes
      case 3: result.l3 = bytes
      default: break
      }
    }
    return result
  }

  /// Parses a sysfs cache size (`"32K"`, `"1024K"`, `"32M"`, plain bytes); nil unless it is in 1 KiB...1 TiB.
  static func cacheBytes(_ text: String) -> Int? {
    var digits = text.trimmingCharacters(in: .whitespacesAndNewlines)
    var scale = 1
    switch digits.last {
    case "K", "k": scale = 1 << 10
    case "M", "m": scale = 1 << 20
    case "G", "g": scale = 1 << 30
    default: break
    }
    if scale != 1 { digits.removeLast() }
    guard let value = Int(digits), value > 0, value <= (1 << 40) / scale else { return nil }
    let bytes = value * scale
    return bytes >= 1 << 10 ? bytes : nil
  }

  /// At most `maximumBytes` from the start of `path`, as UTF-8 text; nil when it cannot be opened.
  ///
  /// `/proc` and `/sys` files report a size of 0 and may be special files, so this reads a bounded
  /// prefix rather than the whole file (see ``BoundedFile`` for the rule).
  static func readPrefix(_ path: String, maximumBytes: Int) -> String? {
    let descriptor = open(path, O_RDONLY | O_NONBLOCK)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var buffer = [UInt8](repeating: 0, count: maximumBytes)
    var filled = 0
    while filled < maximumBytes {
      let count = buffer.withUnsafeMutableBytes { raw in
        read(descriptor, raw.baseAddress! + filled, maximumBytes - filled)
      }
      if count <= 0 { break }
      filled += count
    }
    return String(decoding: buffer[0..<filled], as: UTF8.self)
  }
}
