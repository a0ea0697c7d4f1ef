import Testing

@testable import QuadraCore

/// The fused residual MLP's CPU paths against the reference backend's composition of unfused
/// primitives: outputs, saved tensors and every gradient, across block and chunk boundaries, on one
/// and two threads, fused and unfused (the path the CPU takes when the weights outgrow L2).
@Suite struct ResidualMLPTests {
  static func inputs(rows: Int, channels c: Int, hidden h: Int) -> (Tensor, ResidualMLPParameters, Tensor) {
    var generator = RandomGenerator(seed: 61)
    func uniform(_ shape: [Int], _ lower: Float = -1, _ upper: Float = 1) -> Tensor {
      Tensor.uniform(shape: shape, lower: lower, upper: upper, using: &generator)
    }
    let x = uniform([rows, c], 1, 3)
    let parameters = ResidualMLPParameters(
      normWeight: uniform([c], 0.5, 1.5), normBias: uniform([c]), expandWeight: uniform([h, c], -0.5, 0.5),
      expandBias: uniform([h]), projectWeight: uniform([c, h], -0.5, 0.5), projectBias: uniform([c]),
      scale: uniform([c]))
    return (x, parameters, uniform([rows, c]))
  }

  /// Output, the saved hidden and MLP output, ∂x and the seven parameter gradients.
  static func run(_ x: Tensor, _ p: ResidualMLPParameters, _ dy: Tensor) -> [Tensor] {
    let (y, saved) = x.residualMLP(parameters: p)
    let (dx, gradients) = x.residualMLPBackward(parameters: p, saved: saved, outputGradient: dy)
    return [y, saved.hidden, saved.mlpOutput, dx] + gradients.all
  }

  static func expectClose(_ a: [Tensor], _ b: [Tensor], _ label: String) {
    #expect(a.count == b.count)
    for (i, (x, y)) in zip(a, b).enumerated() {
      #expect(x.shape == y.shape, "\(label) #\(i)")
      let error = x.subtracting(y).maxAbs() / (1 + y.maxAbs())
      #expect(error < 2e-5, "\(label) #\(i): scaled error \(error)")
    }
  }

  /// 101 rows in blocks of at most 16 (seven blocks of whole micro-kernel tiles, the last one part-filled),
  /// C = 11 and H = 19 (vector tails), so the gradient sums cross blocks and chunks.
  @Test(arguments: [(16, true, 1), (16, true, 2), (64, true, 2), (16, false, 2)])
  func matchesTheReference(blockRows: Int, fuses: Bool, threads: Int) {
    let (x, p, dy) = Self.inputs(rows: 101, channels: 11, hidden: 19)
    let expected = Backends.withCurrent(ReferenceBackend()) { Self.run(x, p, dy) }
    let actual = ResidualMLPKernels.Shape.$blockRowsOverride.withValue(blockRows) {
      ResidualMLPKernels.Shape.$fusesOverride.withValue(fuses) {
        Parallel.withThreadCount(threads) { Self.run(x, p, dy) }
      }
    }
    Self.expectClose(actual, expected, "block \(blockRows), fused \(fuses), \(threads) threads")
  }

  /// The chunks depend on the shapes only, so one and two threads give the same bits.
  @Test func sameBitsOnAnyThreadCount() {
    let (x, p, dy) = Self.inputs(rows: 150, channels: 24, hidden: 40)
    let results = [1, 2].map { threads in
      ResidualMLPKernels.Shape.$blockRowsOverride.withValue(16) {
        Parallel.withThreadCount(threads) { Self.run(x, p, dy) }
      }
    }
    for (a, b) in zip(results[0], results[1]) { #expect(a.scalars == b.scalars) }
  }

  /// Known values: with W₁ = 0, b₁ = 0 the hidden layer is GELU(0) = 0, so o = b₂ and y = x + γ ⊙ b₂.
  @Test func zeroExpansionGivesTheScaledProjectionBias() {
    let (x, original, _) = Self.inputs(rows: 5, channels: 3, hidden: 4)
    var p = original
    p.expandWeight = Tensor(zeros: [4, 3])
    p.expandBias = Tensor(zeros: [4])
    p.projectBias = Tensor(shape: [3], scalars: [1, 2, 3])
    p.scale = Tensor(shape: [3], scalars: [0.5, -1, 2])
    let y = x.residualMLP(parameters: p).output
    for row in 0..<5 {
      for (j, shift) in [Float(0.5), -2, 6].enumerated() {
        #expect(abs(y.scalars[row * 3 + j] - (x.scalars[row * 3 + j] + shift)) < 1e-6)
      }
    }
  }

  /// The blocks fill L2 next to the weights; weights that outgrow half of L2 take slices of L3 instead, or the
  /// unfused path when they outgrow an eighth of L3 (next test).
  @Test func blockingFollowsTheCache() {
    let (l2, l3) = (1 << 21, 32 << 20)
    let small = ResidualMLPKernels.Shape(rows: 12544, channels: 40, hidden: 80, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(small.fuses)
    // 799 rows fit next to the weights; 12,544 rows make sixteen equal blocks of 784 within that.
    #expect(((1 << 21) - 4 * 80 * 40 * 4) / ((6 * 40 + 5 * 80) * 4) == 799)
    #expect(small.blockRows == 784 && small.blocks == 16)
    #expect(small.block(small.blocks - 1).upperBound == 12544)
    let wide = ResidualMLPKernels.Shape(rows: 196, channels: 512, hidden: 2048, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(!wide.fuses)
    // W fits in half of L2 (1 MiB at C = 128, H = 512) but leaves room for only 78 rows per block; the
    // 3136 rows' hidden tensor (6.4 MB) stays in L3, so the blocks take slices of L3 (an eighth: 315 rows of
    // 13 KB), ten of them, sharing the 224 tiles of 14 rows: 22 or 23 tiles each.
    let thin = ResidualMLPKernels.Shape(rows: 3136, channels: 128, hidden: 512, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(thin.fuses && thin.blockRows == 23 * 14 && thin.blocks == 10)
    let third = ResidualMLPKernels.Shape(rows: 3136, channels: 160, hidden: 320, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(third.fuses && third.blockRows >= ResidualMLPKernels.Shape.minimumBlockRows)
  }

  /// Where the weights crowd L2, the kernel fuses in slices of L3 with blocks of at least 256 rows and weights
  /// in an eighth of L3: tall blocks when the unfused passes would stream the hidden tensor from memory, and an
  /// even number of equal blocks, at least two, when it stays in L3 and the partial sums leave room for two chunks.
  @Test func blockingInLevel3WhenActivationsOutgrowIt() {
    let (l2, l3) = (512 << 10, 32 << 20)
    // quadranet-t's first stage at batch 16 on Zen 3: 50,176 rows, C = 64, H = 256 (a 51 MB hidden tensor).
    let first = ResidualMLPKernels.Shape(rows: 50176, channels: 64, hidden: 256, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(first.fuses)
    // 630-row slices: 80 blocks sharing 3584 tiles of 14 rows (44 or 45 each).
    #expect(l3 / 8 / ((6 * 64 + 5 * 256) * 4) == 630)
    #expect(first.blocks == 80 && first.blockRows == 45 * 14)
    // Its second stage: 12,544 rows, C = 128, H = 512 (25.7 MB).
    let second = ResidualMLPKernels.Shape(rows: 12544, channels: 128, hidden: 512, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    // 315-row slices: 40 blocks of 22 or 23 tiles.
    #expect(second.fuses && second.blocks == 40 && second.blockRows == 23 * 14)
    // Its third stage: 3,136 rows, C = 256, H = 1024: the 12.8 MB hidden tensor stays in L3. An eighth of L3
    // holds only 157 of its 26 KB rows, too few for a block; since the tensors stay in L3 anyway, the blocks may
    // take a quarter (315 rows): ten blocks of 22 or 23 tiles.
    let third = ResidualMLPKernels.Shape(rows: 3136, channels: 256, hidden: 1024, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(third.fuses && third.blocks == 10 && third.blockRows == 23 * 14)
    // The same rows eight times over would stream from memory, but 4 MiB of weights with 26 KB rows leave
    // blocks of only 157 rows.
    let tall = ResidualMLPKernels.Shape(rows: 8 * 3136, channels: 256, hidden: 1024, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(!tall.fuses)
    // Weights beyond an eighth of L3 are not fused there: C = H = 1024 holds 16 MiB of weights and gradient
    // sums, with 45 KB rows; an L3 of 100 MiB would give blocks of 290 rows but only 12.5 MiB for the
    // weights; one of 160 MiB has room for both.
    let crowded = ResidualMLPKernels.Shape(
      rows: 1 << 16, channels: 1024, hidden: 1024, level2CacheBytes: l2, level3CacheBytes: 100 << 20, tileRows: 14)
    #expect(!crowded.fuses)
    let roomy = ResidualMLPKernels.Shape(
      rows: 1 << 16, channels: 1024, hidden: 1024, level2CacheBytes: l2, level3CacheBytes: 160 << 20, tileRows: 14)
    let roomySlice = (160 << 20) / 8 / ((6 * 1024 + 5 * 1024) * 4)
    #expect(roomy.fuses && roomy.blocks == ((1 << 16) + roomySlice - 1) / roomySlice)
    #expect(roomy.blockRows > roomySlice - 14 && roomy.blockRows < roomySlice + 14)
    // quadranet-28's stages at batch 64, all in L3 in an even number of blocks: the first, for which L2 would
    // hold blocks of 184 rows only, in eight of 1568 (within the 1638 rows of an eighth of L3); the others, whose
    // weights crowd L2, 3136 rows in four of 784 within the 819 rows of a slice, 576 in two (21 tiles of 14 rows
    // each) so that two threads share them.
    let q28 = [(12544, 40, 80), (3136, 80, 160), (576, 160, 320)].map {
      ResidualMLPKernels.Shape(rows: $0.0, channels: $0.1, hidden: $0.2, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    }
    #expect(q28.map(\.fuses) == [true, true, true])
    #expect(q28[1].blockRows == 784 && q28[1].blocks == 4)
    #expect(q28[2].blockRows == 294 && q28[2].blocks == 2)
    #expect(q28[2].block(1) == 294..<576)
    // Too few rows for two blocks of 256 (quadranet-28's third stage at batch 16) stay unfused.
    #expect(!ResidualMLPKernels.Shape(rows: 144, channels: 160, hidden: 320, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14).fuses)
    #expect((l2 - 4 * 80 * 40 * 4) / ((6 * 40 + 5 * 80) * 4) == 184)
    #expect(q28[0].blockRows == 1568 && q28[0].blocks == 8)
  }

  /// A wide MLP, two chunks of whose partial sums exceed the reductions' scratch bound, keeps two chunks of them
  /// where each chunk gets two blocks or more (so its backward pass runs on two threads), and fuses in L3 only then:
  /// quadranet-t's third stage on the Intel Xeon's 2 MiB L2 and 300 MiB L3 (four blocks of 784 rows), not its
  /// fourth (two blocks of 392 rows, one per chunk).
  @Test func wideMLPKeepsTwoChunksOfPartialSums() {
    typealias Shape = ResidualMLPKernels.Shape
    let (l2, l3) = (2 << 20, 300 << 20)
    let third = Shape(rows: 3136, channels: 256, hidden: 1024, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(third.fuses && third.blockRows == 784 && third.blocks == 4)
    #expect(2 * third.partialCount > ElementwiseKernels.maximumReductionScratch)
    #expect(ResidualMLPKernels.backwardChunks(blocks: third.blocks, partialCount: third.partialCount) == 2)
    let fourth = Shape(rows: 784, channels: 512, hidden: 2048, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    #expect(!fourth.fuses)
    #expect(ResidualMLPKernels.backwardChunks(blocks: 2, partialCount: fourth.partialCount) == 1)
    // Small partial sums: as many chunks as blocks (up to the bound), in an even number.
    #expect(ResidualMLPKernels.backwardChunks(blocks: 7, partialCount: 1000) == 6)
    #expect(ResidualMLPKernels.backwardChunks(blocks: 1, partialCount: 1000) == 1)
    #expect(ResidualMLPKernels.backwardChunks(blocks: 40, partialCount: 1000) == ElementwiseKernels.maximumReductionChunks)
  }

  /// Blocks fused in L2 come in an even number of equal blocks, so that two threads get equal shares; where
  /// that would make them shorter than the minimum, an odd count is rounded down instead of up.
  @Test func level2BlocksComeInAnEvenNumber() {
    typealias Shape = ResidualMLPKernels.Shape
    // quadranet-28 at batch 64 with a 2 MiB L2 (the Intel Xeon): its second stage fits 369 rows per block,
    // its third 124; nine and five blocks would give one thread a block more than the other.
    #expect(Shape.level2BlockRows(rows: 3136, limit: 369) == 314)
    #expect(Shape.level2BlockRows(rows: 576, limit: 124) == 144)
    let (l2, l3) = (1 << 21, 260 << 20)
    let stages = [(12544, 40, 80), (3136, 80, 160), (576, 160, 320)].map {
      Shape(rows: $0.0, channels: $0.1, hidden: $0.2, level2CacheBytes: l2, level3CacheBytes: l3, tileRows: 14)
    }
    #expect(stages.map(\.fuses) == [true, true, true])
    // The third stage's 124 rows per L2 block are fewer than an L3 block's 256, so it takes two L3 blocks.
    #expect(stages.map(\.blocks) == [16, 10, 2])
    #expect(stages.map(\.blockRows) == [784, 23 * 14, 21 * 14])
    // Rows that fit one block stay one; an even count within the limit is kept even when short.
    #expect(Shape.level2BlockRows(rows: 100, limit: 300) == 300)
    #expect(Shape.level2BlockRows(rows: 440, limit: 120) == 110)
    // Whatever the rows and limit: blocks cover the rows in an even number (one when they fit; as with
    // ``balancedBlockRows``, whenever the blocks are taller than their number), and overshoot
    // the limit only where equal blocks within it would be shorter than the minimum.
    for limit in [112, 150, 400, 1000] {
      for rows in stride(from: 1, through: 20000, by: 37) {
        let height = Shape.level2BlockRows(rows: rows, limit: limit)
        let count = (rows + height - 1) / height
        #expect(count == 1 || count % 2 == 0 || height < count, "rows \(rows), limit \(limit): \(count) blocks of \(height)")
        #expect(height <= limit || height < 2 * limit && (rows + limit - 1) / limit % 2 == 1)
        if height > limit { #expect(Shape.balancedBlockRows(rows: rows, limit: limit) < Shape.minimumBlockRows) }
      }
    }
  }
}

@Suite struct ResidualMLPBlockBalanceTests {
  /// Blocks are runs of whole micro-kernel tiles (6 rows for the AVX2 kernel, 14 for the AVX-512 one), shared as
  /// evenly as they go: they cover the rows in order, each starts on a tile, none is empty or taller than
  /// `blockRows` (which the tallest comes within a tile of), and their heights differ by one tile at most (the
  /// last may end on a part-filled tile).
  @Test(arguments: [6, 14])
  func blocksAreRunsOfWholeTiles(tileRows: Int) {
    typealias Shape = ResidualMLPKernels.Shape
    for rows in [1, 5, 13, 14, 101, 576, 3136, 12544, 50176] {
      for limit in [16, 100, 157, 630, 784, 5000] {
        let shape = Shape.$fusesOverride.withValue(true) {
          Shape.$blockRowsOverride.withValue(limit) { Shape(rows: rows, channels: 8, hidden: 16, tileRows: tileRows) }
        }
        let ranges = (0..<shape.blocks).map(shape.block)
        let label = "\(rows) rows, limit \(limit), tiles of \(tileRows)"
        #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == rows, "\(label)")
        #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }, "\(label)")
        #expect(ranges.allSatisfy { !$0.isEmpty && $0.count <= shape.blockRows && $0.lowerBound % tileRows == 0 }, "\(label)")
        #expect((ranges.map(\.count).max() ?? 0) + tileRows > shape.blockRows, "\(label)")
        let fullHeights = ranges.dropLast().map(\.count)
        #expect(fullHeights.allSatisfy { $0 % tileRows == 0 && $0 + tileRows >= shape.blockRows }, "\(label): \(fullHeights)")
        // As many blocks as blocks of at most `limit` rows need, unless there are fewer tiles than that.
        #expect(shape.blocks == Swift.min((rows + limit - 1) / limit, (rows + tileRows - 1) / tileRows), "\(label)")
      }
    }
  }

  /// Equal blocks in an even number, each within the limit, whenever the blocks are taller than their number
  /// (the L3 path's blocks have at least 256 rows and number a few dozen at most); one block when the rows fit.
  @Test func balancedBlocksAreEqualAndEven() {
    for (rows, limit) in [(3136, 819), (576, 288), (576, 409), (12544, 315), (1000, 999), (17, 16), (65535, 256)] {
      let height = ResidualMLPKernels.Shape.balancedBlockRows(rows: rows, limit: limit)
      let blocks = (rows + height - 1) / height
      #expect(height <= limit, "\(rows) rows, limit \(limit)")
      #expect(blocks % 2 == 0, "\(rows) rows, limit \(limit): \(blocks) blocks of \(height)")
      // Equal up to the last block, which is short by less than one row per block.
      #expect(rows - (blocks - 1) * height > height - blocks, "\(rows) rows, limit \(limit)")
    }
    #expect(ResidualMLPKernels.Shape.balancedBlockRows(rows: 100, limit: 100) == 100)
    #expect(ResidualMLPKernels.Shape.balancedBlockRows(rows: 3136, limit: 819) == 784)
  }
}
