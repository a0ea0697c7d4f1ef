import Foundation
import QuadraCore

/// Deterministic mutations of a valid input, for fuzz tests whose oracle is the test process itself:
/// a parser may throw or succeed on a mutant, but a trap, an abort or a hang kills (or stalls) the suite.
struct Mutator {
  var generator: RandomGenerator

  init(seed: UInt64) { generator = RandomGenerator(seed: seed) }

  /// Numbers spliced into numeric fields: limits of the integer types, overflowing and non-finite values.
  static let hugeNumbers = [
    "-1", "0", "-0", "65", "2147483648", "4294967295", "4294967296", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "18446744073709551615", "99999999999999999999999", "1e30", "1e39", "-1e39", "1e308",
    "1e400", "0.5", "1.5", "4611686018427387904", "1000000", "100000",
  ]

  mutating func index(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(generator.next() % UInt64(bound)) }

  /// One random mutation of `bytes`.
  mutating func mutate(_ bytes: [UInt8]) -> [UInt8] {
    var result = bytes
    switch index(bytes.isEmpty ? 1 : 8) {
    case 0:  // Flip 1...4 bits.
      guard !result.isEmpty else { return [UInt8(index(256))] }
      for _ in 0...index(4) { result[index(result.count)] ^= UInt8(1) << UInt8(index(8)) }
    case 1:  // Truncate.
      result.removeLast(index(result.count) + 1)
    case 2:  // Insert random bytes.
      let position = index(result.count + 1)
      result.insert(contentsOf: (0...index(8)).map { _ in UInt8(index(256)) }, at: position)
    case 3:  // Splice a huge number into a numeric field (a run of ASCII digits).
      let digitRuns = Self.digitRuns(result)
      guard let run = digitRuns.isEmpty ? nil : digitRuns[index(digitRuns.count)] else { return mutate(result) }
      result.replaceSubrange(run, with: Array(Self.hugeNumbers[index(Self.hugeNumbers.count)].utf8))
    case 4:  // Overwrite an aligned 4- or 8-byte word with an extreme value (binary lengths, offsets, dimensions).
      let width = index(2) == 0 ? 4 : 8
      guard result.count >= width else { return mutate(result) }
      let position = index(result.count - width + 1)
      let values: [UInt64] = [0, 1, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000_0000_0000, UInt64.max, generator.next()]
      let value = values[index(values.count)]
      for k in 0..<width { result[position + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
    case 5:  // A nesting bomb.
      let open = index(2) == 0 ? UInt8(ascii: "[") : UInt8(ascii: "{")
      result.insert(contentsOf: [UInt8](repeating: open, count: 1000 + index(50_000)), at: index(result.count + 1))
    case 6:  // Duplicate a slice (repeats keys, values, members).
      let start = index(result.count)
      let end = Swift.min(result.count, start + 1 + index(64))
      result.insert(contentsOf: result[start..<end], at: index(result.count + 1))
    default:  // Delete a slice.
      let start = index(result.count)
      result.removeSubrange(start..<Swift.min(result.count, start + 1 + index(16)))
    }
    return result
  }

  /// The ranges of consecutive ASCII digits (with a leading minus sign) in `bytes`.
  static func digitRuns(_ bytes: [UInt8]) -> [Range<Int>] {
    var runs: [Range<Int>] = []
    var start: Int?
    for (i, byte) in bytes.enumerated() {
      let isDigit = (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
      if isDigit, start == nil { start = i > 0 && bytes[i - 1] == UInt8(ascii: "-") ? i - 1 : i }
      if !isDigit, let s = start {
        runs.append(s..<i)
        start = nil
      }
    }
    if let start { runs.append(start..<bytes.count) }
    return runs
  }
}

/// Runs `body` on `count` mutants of `seed` (1-3 mutations each) and returns how many it accepted;
/// rejection must be a thrown error, anything else is a crash of the test process.
func fuzz(_ seedInput: [UInt8], count: Int, seed: UInt64, _ body: ([UInt8]) throws -> Void) -> (accepted: Int, rejected: Int) {
  var mutator = Mutator(seed: seed)
  var accepted = 0
  var rejected = 0
  for _ in 0..<count {
    var mutant = seedInput
    for _ in 0...mutator.index(3) { mutant = mutator.mutate(mutant) }
    do {
      try body(mutant)
      accepted += 1
    } catch {
      rejected += 1
    }
  }
  return (accepted, rejected)
}
