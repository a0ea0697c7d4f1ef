import Testing

@testable import QuadraCore

/// The GELU loops run 16 lanes at a time except in the portable build, which runs 8; every lane does the same
/// operations, so both widths must give the same bits, in the vector body and in the tails.
@Suite struct GELUWidthTests {
  static func values(_ count: Int, seed: UInt64) -> [Float] {
    var generator = RandomGenerator(seed: seed)
    return Tensor.uniform(shape: [count], lower: -6, upper: 6, using: &generator).scalars
  }

  /// Runs `body` at both widths and returns the two results.
  static func bothWidths(_ body: () -> [Float]) -> (narrow: [Float], wide: [Float]) {
    (ActivationKernels.$wideOverride.withValue(false, operation: body),
     ActivationKernels.$wideOverride.withValue(true, operation: body))
  }

  @Test(arguments: [(1, 7), (3, 16), (5, 21), (2, 40), (1, 1)])
  func sameBitsAtBothWidths(rows: Int, columns: Int) {
    let n = rows * columns
    let x = Self.values(n, seed: 1), g = Self.values(n, seed: 2), bias = Self.values(columns, seed: 3)
    for hasBias in [false, true] {
      let forward = Self.bothWidths {
        var y = [Float](repeating: .nan, count: n)
        x.withUnsafeBufferPointer { xp in
          bias.withUnsafeBufferPointer { bp in
            ActivationKernels.gelu(
              xp.baseAddress!, bias: hasBias ? bp.baseAddress! : nil, &y, rows: rows, columns: columns)
          }
        }
        return y
      }
      #expect(forward.narrow == forward.wide, "GELU, bias \(hasBias)")
      #expect(!forward.narrow.contains { $0.isNaN }, "every element written")
      let backward = Self.bothWidths {
        var d = [Float](repeating: .nan, count: n)
        var sums = [Float](repeating: 0, count: columns)
        x.withUnsafeBufferPointer { xp in
          g.withUnsafeBufferPointer { gp in
            bias.withUnsafeBufferPointer { bp in
              ActivationKernels.geluBackward(
                gp.baseAddress!, xp.baseAddress!, bias: hasBias ? bp.baseAddress! : nil, &d, rows: rows,
                columns: columns, biasSums: &sums)
            }
          }
        }
        return d + sums
      }
      #expect(backward.narrow == backward.wide, "GELU backward, bias \(hasBias)")
    }
    let both = Self.bothWidths { Self.geluBackwardWithActivation(x, g, rows: rows, columns: columns) }
    #expect(both.narrow == both.wide, "GELU with its derivative, in one pass")
    #expect(!both.narrow.contains { $0.isNaN }, "every element written")
  }

  /// ``ActivationKernels/geluBackwardWithActivation(_:gradient:activated:biasSums:rows:columns:)``'s outputs
  /// concatenated: GELU(x), g ⊙ GELU′(x), then the column sums of the latter.
  static func geluBackwardWithActivation(_ x: [Float], _ g: [Float], rows: Int, columns: Int) -> [Float] {
    var a = [Float](repeating: .nan, count: x.count), d = g, sums = [Float](repeating: 0, count: columns)
    ActivationKernels.geluBackwardWithActivation(x, gradient: &d, activated: &a, biasSums: &sums, rows: rows, columns: columns)
    return a + d + sums
  }

  /// The residual MLP's one-pass GELU backward gives the same ∂h and bias sums, to the bit, as the plain
  /// GELU backward (the same GELU′ operations), and GELU(x) within the two erf approximations' difference.
  @Test(arguments: [(3, 16), (5, 21), (2, 40), (4, 80)])
  func onePassBackwardMatchesSeparatePasses(rows: Int, columns: Int) {
    let n = rows * columns
    let x = Self.values(n, seed: 4), g = Self.values(n, seed: 5)
    for wide in [false, true] {
      ActivationKernels.$wideOverride.withValue(wide) {
        let fused = Self.geluBackwardWithActivation(x, g, rows: rows, columns: columns)
        var d = [Float](repeating: .nan, count: n), sums = [Float](repeating: 0, count: columns)
        var y = [Float](repeating: .nan, count: n)
        ActivationKernels.geluBackward(g, x, bias: nil, &d, rows: rows, columns: columns, biasSums: &sums)
        ActivationKernels.gelu(x, bias: nil, &y, rows: rows, columns: columns)
        #expect(Array(fused[n...]) == d + sums, "wide \(wide): ∂h and ∂b bit for bit")
        let largest = zip(fused[..<n], y).map { abs($0 - $1) }.max() ?? .infinity
        #expect(largest < 2e-6, "wide \(wide): GELU(x) differs by \(largest)")
      }
    }
  }

  /// Known values: GELU(0) = 0, GELU′(0) = ½, GELU(x) → x and GELU′(x) → 1 for large x, → 0 for very negative x.
  @Test func knownValues() {
    let x: [Float] = [0, 10, -10, 1]
    for wide in [false, true] {
      ActivationKernels.$wideOverride.withValue(wide) {
        // With ∂GELU(x) = 1 the one-pass backward leaves GELU′(x) in place of the gradient.
        let out = Self.geluBackwardWithActivation(x, [1, 1, 1, 1], rows: 1, columns: 4)
        let a = Array(out[0..<4]), d = Array(out[4..<8])
        #expect(a[0] == 0 && abs(d[0] - 0.5) < 1e-6)
        #expect(abs(a[1] - 10) < 1e-5 && abs(d[1] - 1) < 1e-5)
        #expect(abs(a[2]) < 1e-5 && abs(d[2]) < 1e-5)
        // GELU(1) = Φ(1) = 0.841344746…, GELU′(1) = Φ(1) + φ(1) = 0.841344746 + 0.241970725.
        #expect(abs(a[3] - 0.841_344_75) < 1e-6 && abs(d[3] - 1.083_315_47) < 1e-6)
        var y = [Float](repeating: 0, count: 4)
        ActivationKernels.gelu(x, bias: nil, &y, rows: 1, columns: 4)
        #expect(abs(y[3] - 0.841_344_75) < 1e-6 && y[0] == 0)
      }
    }
  }
}
