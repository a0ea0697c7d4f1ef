import Foundation
import Testing

@testable import QuadraData

/// A dataset whose images are random values, `[count, h, w, c]`, labels `i % classCount`.
func syntheticDataset(count: Int, height: Int, width: Int, channels: Int = 1, seed: UInt64) -> Dataset {
  var generator = RandomGenerator(seed: seed)
  let images = Tensor.normal(shape: [count, height, width, channels], using: &generator)
  return Dataset(
    name: "synthetic", images: images, labels: (0..<count).map { $0 % 3 }, classCount: 3,
    normalization: Normalization(maxValue: 255, mean: 0.5, std: 0.25))
}

/// The plain definition of the crop/flip: output (y, x) = input (y + dy, x' + dx), x' mirrored if flipped.
func naiveTransform(_ images: Tensor, sample: Int, dy: Int, dx: Int, flip: Bool, fill: Float) -> [Float] {
  let h = images.shape[1], w = images.shape[2], c = images.shape[3]
  var out: [Float] = []
  for y in 0..<h {
    for x in 0..<w {
      let sy = y + dy, sx = (flip ? w - 1 - x : x) + dx
      for k in 0..<c {
        out.append(sy >= 0 && sy < h && sx >= 0 && sx < w ? images[sample, sy, sx, k] : fill)
      }
    }
  }
  return out
}

func sampleScalars(_ tensor: Tensor, _ row: Int) -> [Float] {
  let size = tensor.shape.dropFirst().reduce(1, *)
  return Array(tensor.scalars[(row * size)..<((row + 1) * size)])
}

@Suite struct AugmentationTests {
  @Test func identityWithoutPaddingOrFlip() {
    let dataset = syntheticDataset(count: 5, height: 4, width: 3, channels: 2, seed: 1)
    var generator = RandomGenerator(seed: 2)
    let before = generator
    let out = Augmentation.none.apply(to: dataset.images, using: &generator)
    #expect(out.shape == dataset.images.shape)
    #expect(out.scalars == dataset.images.scalars)
    #expect(generator == before)  // no draws
  }

  @Test func gatherMatchesNaiveTransforms() {
    let images = syntheticDataset(count: 6, height: 5, width: 7, channels: 3, seed: 3).images
    let transforms: [Augmentation.SampleTransform] = [
      .init(dy: 0, dx: 0, flip: false), .init(dy: 2, dx: -1, flip: false), .init(dy: -3, dx: 4, flip: true),
      .init(dy: 0, dx: 0, flip: true), .init(dy: 1, dx: 9, flip: false), .init(dy: -5, dx: -2, flip: true),
      .init(dy: 0, dx: 8, flip: true), .init(dy: 2, dx: -6, flip: true), .init(dy: -1, dx: -7, flip: false),
    ]
    let indices = [4, 0, 5, 2, 2, 1, 3, 0, 5]
    let out = Tensor.gatheringImages(images, indices: indices, transforms: transforms, fill: -1.5)
    for (row, t) in transforms.enumerated() {
      #expect(
        sampleScalars(out, row)
          == naiveTransform(images, sample: indices[row], dy: t.dy, dx: t.dx, flip: t.flip, fill: -1.5), "row \(row)")
    }
  }

  @Test func randomCropAndFlipFollowTheirDraws() {
    let images = syntheticDataset(count: 9, height: 6, width: 5, seed: 4).images
    let augmentation = Augmentation(padding: 2, horizontalFlip: true)
    var generator = RandomGenerator(seed: 5)
    var replay = generator
    let out = augmentation.apply(to: images, fill: 0.25, using: &generator)
    #expect(out.shape == images.shape)
    let transforms = augmentation.drawTransforms(9, using: &replay)
    #expect(replay == generator)
    #expect(transforms.allSatisfy { abs($0.dy) <= 2 && abs($0.dx) <= 2 })
    #expect(transforms.contains { $0.flip } && transforms.contains { !$0.flip })
    for (i, t) in transforms.enumerated() {
      #expect(sampleScalars(out, i) == naiveTransform(images, sample: i, dy: t.dy, dx: t.dx, flip: t.flip, fill: 0.25))
    }
  }

  @Test func flipOnlyMirrorsOrKeeps() {
    let images = syntheticDataset(count: 16, height: 3, width: 4, seed: 6).images
    var generator = RandomGenerator(seed: 7)
    let out = Augmentation(padding: 0, horizontalFlip: true).apply(to: images, using: &generator)
    var flipped = 0
    for i in 0..<16 {
      let same = sampleScalars(out, i) == sampleScalars(images, i)
      let mirrored = sampleScalars(out, i) == naiveTransform(images, sample: i, dy: 0, dx: 0, flip: true, fill: 0)
      #expect(same || mirrored)
      if mirrored { flipped += 1 }
    }
    #expect(flipped > 0 && flipped < 16)
  }
}

@Suite struct BatchIteratorTests {
  @Test func coversEverySampleOncePerEpoch() {
    let dataset = syntheticDataset(count: 23, height: 2, width: 3, seed: 1)
    var iterator = BatchIterator(dataset: dataset, batchSize: 7, seed: 42)
    #expect(iterator.batchesPerEpoch == 4)
    var orders: [[Int]] = []
    for epoch in 0..<3 {
      var seen: [Int] = []
      var sizes: [Int] = []
      while let batch = iterator.next() {
        sizes.append(batch.count)
        seen += batch.indices
        #expect(batch.images.shape == [batch.count, 2, 3, 1])
        #expect(batch.labels == batch.indices.map { dataset.labels[$0] })
        for (row, index) in batch.indices.enumerated() {
          #expect(sampleScalars(batch.images, row) == sampleScalars(dataset.images, index))
        }
      }
      #expect(sizes == [7, 7, 7, 2])
      #expect(seen.sorted() == Array(0..<23))
      #expect(iterator.state.epoch == epoch + 1 && iterator.state.position == 0)
      orders.append(seen)
    }
    #expect(orders[0] != orders[1] && orders[1] != orders[2] && orders[0] != Array(0..<23))
  }

  @Test func dropLastAndNoShuffle() {
    let dataset = syntheticDataset(count: 23, height: 2, width: 2, seed: 2)
    var iterator = BatchIterator(dataset: dataset, batchSize: 5, shuffle: false, dropLast: true, seed: 0)
    #expect(iterator.batchesPerEpoch == 4)
    var seen: [Int] = []
    while let batch = iterator.next() {
      #expect(batch.count == 5)
      seen += batch.indices
    }
    #expect(seen == Array(0..<20))
    // A batch larger than the dataset with dropLast yields nothing but still advances the epoch.
    var empty = BatchIterator(dataset: dataset, batchSize: 30, dropLast: true, seed: 0)
    #expect(empty.next() == nil && empty.state.epoch == 1)
  }

  @Test func sameSeedSameBatches() {
    let dataset = syntheticDataset(count: 19, height: 4, width: 4, seed: 3)
    let augmentation = Augmentation(padding: 1, horizontalFlip: true)
    var a = BatchIterator(dataset: dataset, batchSize: 4, augmentation: augmentation, seed: 9)
    var b = BatchIterator(dataset: dataset, batchSize: 4, augmentation: augmentation, seed: 9)
    var c = BatchIterator(dataset: dataset, batchSize: 4, augmentation: augmentation, seed: 10)
    var differs = false
    for _ in 0..<12 {
      let x = a.next(), y = b.next(), z = c.next()
      #expect(x?.indices == y?.indices && x?.images.scalars == y?.images.scalars)
      if x?.indices != z?.indices { differs = true }
    }
    #expect(differs)
  }

  @Test func resumesExactlyFromSavedState() throws {
    let dataset = syntheticDataset(count: 17, height: 5, width: 4, seed: 4)
    let augmentation = Augmentation(padding: 2, horizontalFlip: true)
    var original = BatchIterator(dataset: dataset, batchSize: 3, augmentation: augmentation, seed: 77)
    // One full epoch, then two batches into the next.
    while original.next() != nil {}
    _ = original.next()
    _ = original.next()
    let saved = try JSONEncoder().encode(original.state)
    let state = try JSONDecoder().decode(BatchIterator.State.self, from: saved)
    #expect(state == original.state && state.epoch == 1 && state.position == 6)
    var resumed = BatchIterator(dataset: dataset, batchSize: 3, augmentation: augmentation, resumingFrom: state)
    #expect(resumed.epochOrder == original.epochOrder)
    for step in 0..<20 {  // across two epoch boundaries
      let x = original.next(), y = resumed.next()
      #expect(x?.indices == y?.indices, "step \(step)")
      #expect(x?.images.scalars == y?.images.scalars, "step \(step)")
    }
    #expect(resumed.state == original.state)
  }

  @Test func augmentedBatchesPadWithBlack() {
    // Raw images of 255 everywhere: every padded pixel is the normalized value of raw 0.
    let normalization = Normalization(maxValue: 255, mean: 0.3, std: 0.4)
    let white = normalization.normalize(raw: 255)
    let dataset = Dataset(
      name: "white", images: Tensor(shape: [8, 4, 4, 1], repeating: white), labels: [Int](repeating: 0, count: 8),
      classCount: 1, normalization: normalization)
    var iterator = BatchIterator(dataset: dataset, batchSize: 8, augmentation: Augmentation(padding: 2), seed: 1)
    let batch = iterator.next()!
    let black = normalization.normalize(raw: 0)
    #expect(batch.images.scalars.allSatisfy { $0 == white || $0 == black })
    #expect(batch.images.scalars.contains(black))
  }
}

extension Batch: Equatable {
  public static func == (a: Batch, b: Batch) -> Bool { a.indices == b.indices && a.images.scalars == b.images.scalars }
}
