import Foundation
import Testing

@testable import QuadraData

@Suite struct DigitsTests {
  @Test func embeddedCSVParses() throws {
    let (raw, labels) = try DatasetSplits.loadDigitsCSV()
    #expect(raw.count == 1797 && labels.count == 1797)
    #expect(raw.pixels.count == 1797 * 64 && raw.pixels.allSatisfy { $0 <= 16 })
    // The first row of digits.csv: a zero.
    #expect(Array(raw.pixels[0..<16]) == [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0])
    #expect(labels[0] == 0 && labels[1] == 1)
    var histogram = [Int](repeating: 0, count: 10)
    for label in labels { histogram[label] += 1 }
    #expect(histogram == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
  }

  @Test func loadsStratifiedDeterministicSplit() throws {
    let splits = try DatasetSplits.digits()
    #expect(splits.train.count == 1437 && splits.test.count == 360 && splits.validation == nil)
    #expect(splits.train.images.shape == [1437, 8, 8, 1] && splits.test.images.shape == [360, 8, 8, 1])
    #expect(splits.train.classCount == 10 && splits.test.classCount == 10)
    #expect(splits.train.defaultAugmentation.horizontalFlip == false)
    let full = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    for (c, n) in splits.test.classHistogram.enumerated() {
      #expect(abs(Double(n) - Double(full[c]) * 360 / 1797) < 1, "class \(c): \(n) test samples")
    }
    // Standardized with training statistics.
    let values = splits.train.images.scalars.map(Double.init)
    let mean = values.reduce(0, +) / Double(values.count)
    let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
    #expect(abs(mean) < 1e-4 && abs(variance - 1) < 1e-3)

    let again = try DatasetSplits.digits()
    #expect(again.test.labels == splits.test.labels && again.test.images.scalars == splits.test.images.scalars)
    #expect(again.train.images.scalars == splits.train.images.scalars)
    let otherSeed = try DatasetSplits.digits(splitSeed: 1)
    #expect(otherSeed.test.images.scalars != splits.test.images.scalars)
  }

  @Test func trainAndTestPartitionTheSamples() throws {
    let (raw, labels) = try DatasetSplits.loadDigitsCSV()
    let split = DatasetSplitter.stratified(labels: labels, classCount: 10, holdOutCount: 360, seed: 0)
    #expect(Set(split.kept).isDisjoint(with: split.heldOut))
    #expect((split.kept + split.heldOut).sorted() == Array(0..<1797))
    // The loader's test set holds exactly these rows.
    let splits = try DatasetSplits.digits()
    let expected = raw.tensor(split.heldOut, normalization: splits.test.normalization)
    #expect(expected.scalars == splits.test.images.scalars)
    #expect(splits.test.labels == split.heldOut.map { labels[$0] })
  }

  @Test func validationFromDigitsTrain() throws {
    let splits = try DatasetSplits.load(.digits, validation: .count(137))
    #expect(splits.train.count == 1300 && splits.validation?.count == 137 && splits.test.count == 360)
    #expect(splits.validation?.name == "digits/validation")
    #expect(throws: DatasetError.self) { try DatasetSplits.digits(validation: .count(1437)) }
    #expect(throws: DatasetError.self) { try DatasetSplits.digits(validation: .fraction(1.5)) }
  }
}

@Suite struct SplitterTests {
  @Test(arguments: [(97, 3, 20), (10, 4, 0), (31, 5, 31), (200, 7, 33)])
  func stratifiedQuotas(total: Int, classCount: Int, holdOut: Int) {
    var generator = RandomGenerator(seed: UInt64(total))
    // Skewed class sizes.
    let labels = (0..<total).map { _ in Swift.min(Int(generator.nextUniform() * generator.nextUniform() * Float(classCount)), classCount - 1) }
    let split = DatasetSplitter.stratified(labels: labels, classCount: classCount, holdOutCount: holdOut, seed: 9)
    #expect(split.heldOut.count == holdOut && split.kept.count == total - holdOut)
    #expect((split.kept + split.heldOut).sorted() == Array(0..<total))
    for c in 0..<classCount {
      let n = labels.filter { $0 == c }.count
      let held = split.heldOut.filter { labels[$0] == c }.count
      #expect(abs(Double(held) - Double(n * holdOut) / Double(total)) < 1, "class \(c)")
    }
    let again = DatasetSplitter.stratified(labels: labels, classCount: classCount, holdOutCount: holdOut, seed: 9)
    #expect(again.heldOut == split.heldOut)
  }

  @Test func permutationIsUniformEnough() {
    var generator = RandomGenerator(seed: 1)
    var firstPosition = [Int](repeating: 0, count: 5)
    for _ in 0..<5000 {
      let p = DatasetSplitter.permutation(5, using: &generator)
      #expect(p.sorted() == [0, 1, 2, 3, 4])
      firstPosition[p[0]] += 1
    }
    // Each element lands first ~1000 times (σ ≈ 28).
    #expect(firstPosition.allSatisfy { abs($0 - 1000) < 150 }, "\(firstPosition)")
  }
}
