import Foundation

@testable import QuadraData

/// A fresh empty directory under the system temporary directory; remove it with `removeDirectory`.
func makeTemporaryDirectory() throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("quadra-data-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

func removeDirectory(_ url: URL) {
  try? FileManager.default.removeItem(at: url)
}

/// Random bytes in `0..<bound` from a seeded generator.
func randomBytes(_ count: Int, below bound: Int = 256, seed: UInt64) -> [UInt8] {
  var generator = RandomGenerator(seed: seed)
  return (0..<count).map { _ in UInt8(truncatingIfNeeded: Int(generator.next() % UInt64(bound))) }
}

/// Captures the error `body` throws (nil if it does not throw).
func thrownError(_ body: () throws -> Void) -> Error? {
  do {
    try body()
    return nil
  } catch {
    return error
  }
}

/// Writes the four files of an MNIST-style IDX directory; returns the raw arrays.
@discardableResult
func writeIDXDirectory(
  _ directory: URL, trainCount: Int, testCount: Int, height: Int, width: Int, classCount: Int = 10,
  gzip: Bool, seed: UInt64
) throws -> (trainImages: IDXArray, trainLabels: IDXArray, testImages: IDXArray, testLabels: IDXArray) {
  let trainImages = IDXArray(
    dimensions: [trainCount, height, width], bytes: randomBytes(trainCount * height * width, seed: seed))
  let trainLabels = IDXArray(dimensions: [trainCount], bytes: randomBytes(trainCount, below: classCount, seed: seed + 1))
  let testImages = IDXArray(
    dimensions: [testCount, height, width], bytes: randomBytes(testCount * height * width, seed: seed + 2))
  let testLabels = IDXArray(dimensions: [testCount], bytes: randomBytes(testCount, below: classCount, seed: seed + 3))
  let files: [(String, IDXArray)] = [
    ("train-images-idx3-ubyte", trainImages), ("train-labels-idx1-ubyte", trainLabels),
    ("t10k-images-idx3-ubyte", testImages), ("t10k-labels-idx1-ubyte", testLabels),
  ]
  for (name, array) in files {
    let raw = IDX.encode(array)
    if gzip {
      try Gzip.compress(raw).write(to: directory.appendingPathComponent(name + ".gz"))
    } else {
      try raw.write(to: directory.appendingPathComponent(name))
    }
  }
  return (trainImages, trainLabels, testImages, testLabels)
}
