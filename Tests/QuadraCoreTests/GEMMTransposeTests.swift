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

  /// 16 rows of a stored `Bᵀ` into one half of a 32-wide B panel (`columnStride` 32): each depth step's 16 values at
  /// `p · 32`, the other half of every step untouched, nothing written past the panel.
  @Test(arguments: [0, 1, 15, 16, 17, 33, 100])
  func sixteenRowsIntoHalfAPanel(k: Int) {
    let (rows, ldb, width) = (16, k + 5, 32)
    let source = (0..<(rows * ldb)).map { Float($0 % 997) - 400 }
    let canary: Float = -12345
    var panel = [Float](repeating: canary, count: width * k + 32)
    source.withUnsafeBufferPointer { b in
      panel.withUnsafeMutableBufferPointer { p in
        GEMMTranspose.columns16(of: b.baseAddress!, lda: ldb, rows: rows, k: k, into: p.baseAddress! + 16, columnStride: width)
      }
    }
    var wrong = 0
    for p in 0..<k {
      for i in 0..<rows where panel[p * width + 16 + i] != source[i * ldb + p] { wrong += 1 }
      for i in 0..<16 where panel[p * width + i] != canary { wrong += 1 }
    }
    #expect(wrong == 0, "k \(k)")
    #expect(panel[(width * k)...].allSatisfy { $0 == canary }, "wrote past the panel: k \(k)")
  }
}
