import Testing

@testable import QuadraCore

/// The in-register transposes that pack a row-major `A` into column panels: every column group and
/// remainder, exact values, and nothing written past the panel.
@Suite struct GEMMTransposeTests {
  /// Packs `rows` rows of `k` floats (row stride `k + 3`) and checks every float of the panel and a
  /// canary after it.
  func check(rows: Int, k: Int, wide: Bool) {
    let lda = k + 3
    let source = (0..<(rows * lda)).map { Float($0 % 1009) - 500 }
    let canary: Float = -12345
    var panel = [Float](repeating: canary, count: rows * k + 32)
    source.withUnsafeBufferPointer { a in
      panel.withUnsafeMutableBufferPointer { p in
        if wide {
          GEMMTranspose.columns16(of: a.baseAddress!, lda: lda, rows: rows, k: k, into: p.baseAddress!)
        } else {
          GEMMTranspose.columns8(of: a.baseAddress!, lda: lda, rows: rows, k: k, into: p.baseAddress!)
        }
      }
    }
    var wrong = 0
    for p in 0..<k {
      for i in 0..<rows where panel[p * rows + i] != source[i * lda + p] { wrong += 1 }
    }
    #expect(wrong == 0, "rows \(rows) k \(k) wide \(wide)")
    #expect(panel[(rows * k)...].allSatisfy { $0 == canary }, "wrote past the panel: rows \(rows) k \(k)")
  }

  @Test(arguments: [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100])
  func eightColumnGroups(k: Int) {
    for rows in 4...8 { check(rows: rows, k: k, wide: false) }
  }

  @Test(arguments: [0, 1, 15, 16, 17, 31, 32, 33, 100])
  func sixteenColumnGroups(k: Int) {
    for rows in 8...16 { check(rows: rows, k: k, wide: true) }
  }
}
