import Foundation

/// The axis order of rank-4 image arrays.
public enum ArrayLayout: String, Sendable, CaseIterable {
  /// `[N, H, W, C]`.
  case nhwc
  /// `[N, C, H, W]` (PyTorch's).
  case nchw
}

extension DatasetSplits {
  /// The array names a `.npz` dataset must hold.
  public static let archiveArrayNames = ["x_train", "y_train", "x_test", "y_test"]

  /// A dataset from a `.npz` archive (as written by `numpy.savez`) of at most 4 GiB; see
  /// ``numPyArrays(_:path:layout:classCount:validation:splitSeed:)`` for the arrays it needs.
  public static func numPyArchive(
    _ url: URL, layout: ArrayLayout? = nil, classCount: Int? = nil, validation: HoldOut = .none, splitSeed: UInt64 = 0
  ) throws -> DatasetSplits {
    let arrays = try NumPyArchive.read(contentsOf: url, maximumBytes: 4 << 30)
    return try numPyArrays(
      arrays, path: url.path, layout: layout, classCount: classCount, validation: validation, splitSeed: splitSeed)
  }

  /// A dataset from the arrays `x_train`, `y_train`, `x_test`, `y_test`.
  ///
  /// Images: uint8 (raw 0…255) or float32, `[N, H, W]` (gray), `[N, H, W, C]` or `[N, C, H, W]` with
  /// `C` in 1…64. Without `layout` the order is inferred when only one of axes 1 and 3 has size 1, 3 or 4;
  /// otherwise the error asks for `--layout`. float32 images are stored as bytes: values in [0, 1] are
  /// scaled by 255, values in [0, 255] kept; both are rounded to whole levels (8-bit precision).
  /// Labels: rank-1 uint8 or float32 holding whole numbers, one per image; the class count is
  /// `max label + 1` unless `classCount` is given. Class names are the label indices.
  public static func numPyArrays(
    _ arrays: [String: NumPyArray], path: String, layout: ArrayLayout? = nil, classCount: Int? = nil,
    validation: HoldOut = .none, splitSeed: UInt64 = 0
  ) throws -> DatasetSplits {
    func array(_ name: String) throws -> NumPyArray {
      guard let value = arrays[name] else {
        throw DatasetError.invalidArchive(
          path: path, array: name, reason: "missing (a .npz dataset holds \(archiveArrayNames.joined(separator: ", ")))")
      }
      return value
    }
    let (trainImages, testImages) = (try array("x_train"), try array("x_test"))
    let train = try rawImages(trainImages, name: "x_train", path: path, layout: layout)
    let test = try rawImages(testImages, name: "x_test", path: path, layout: layout)
    guard (train.height, train.width, train.channels) == (test.height, test.width, test.channels) else {
      throw DatasetError.invalidArchive(
        path: path, array: "x_test",
        reason: "images are \(test.height)×\(test.width)×\(test.channels), x_train's \(train.height)×\(train.width)×\(train.channels)")
    }
    let bound = classCount ?? classCountRange.upperBound
    let trainLabels = try labels(try array("y_train"), name: "y_train", path: path, count: train.count, classCount: bound)
    let testLabels = try labels(try array("y_test"), name: "y_test", path: path, count: test.count, classCount: bound)
    let resolvedClassCount = classCount ?? ((trainLabels + testLabels).max() ?? 0) + 1
    return try make(
      name: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent, train: train, trainLabels: trainLabels,
      test: test, testLabels: testLabels, classCount: resolvedClassCount, classNames: nil, validation: validation,
      splitSeed: splitSeed, augmentation: Augmentation(padding: 0, horizontalFlip: false))
  }

  /// Whether `size` is a plausible channel count for inferring the layout.
  static func looksLikeChannels(_ size: Int) -> Bool { [1, 3, 4].contains(size) }

  static func rawImages(_ array: NumPyArray, name: String, path: String, layout: ArrayLayout?) throws -> RawImages {
    let shape = array.shape
    func fail(_ reason: String) -> DatasetError { .invalidArchive(path: path, array: name, reason: reason) }
    guard shape.count == 3 || shape.count == 4 else {
      throw fail("shape \(shape): images must be [N, H, W], [N, H, W, C] or [N, C, H, W]")
    }
    var order = ArrayLayout.nhwc
    if shape.count == 4 {
      if let layout {
        order = layout
      } else {
        switch (looksLikeChannels(shape[1]), looksLikeChannels(shape[3])) {
        case (true, false): order = .nchw
        case (false, true): order = .nhwc
        default: throw fail("shape \(shape): cannot tell NHWC from NCHW; give --layout nhwc or nchw")
        }
      }
    }
    let count = shape[0]
    let (channels, height, width) =
      shape.count == 3 ? (1, shape[1], shape[2]) : order == .nhwc ? (shape[3], shape[1], shape[2]) : (shape[1], shape[2], shape[3])
    guard count >= 1, IDX.imageSideRange.contains(height), IDX.imageSideRange.contains(width), (1...64).contains(channels)
    else {
      throw fail(
        "shape \(shape) (\(order)): need at least 1 image, height and width in 1...\(IDX.imageSideRange.upperBound), channels in 1...64")
    }
    var bytes: [UInt8]
    switch array.elements {
    case .uint8(let values): bytes = values
    case .float32(let values):
      if let bad = values.first(where: { !($0.isFinite && $0 >= 0 && $0 <= 255) }) {
        throw fail("value \(bad) outside [0, 255] (float32 images hold values in [0, 1] or [0, 255])")
      }
      let scale: Float = (values.max() ?? 0) <= 1 ? 255 : 1
      bytes = values.map { UInt8(($0 * scale).rounded()) }
    case .int32, .int64:
      throw fail("integer images (int32/int64) are not accepted; store them as uint8 or float32")
    }
    if order == .nchw && shape.count == 4 && channels > 1 {
      // [N, C, H, W] → [N, H, W, C].
      let plane = height * width
      var transposed = [UInt8](repeating: 0, count: bytes.count)
      for n in 0..<count {
        let base = n * channels * plane
        for c in 0..<channels {
          for p in 0..<plane { transposed[base + p * channels + c] = bytes[base + c * plane + p] }
        }
      }
      bytes = transposed
    }
    return RawImages(count: count, height: height, width: width, channels: channels, maxValue: 255, pixels: bytes)
  }

  static func labels(_ array: NumPyArray, name: String, path: String, count: Int, classCount: Int) throws -> [Int] {
    guard array.shape == [count] else {
      throw DatasetError.invalidArchive(path: path, array: name, reason: "shape \(array.shape), expected [\(count)] (one label per image)")
    }
    // Integer labels are checked exactly (an int64 above 2^24 must not round into range as a Float).
    let integers: [Int64]?
    switch array.elements {
    case .int32(let values): integers = values.map(Int64.init)
    case .int64(let values): integers = values
    case .uint8, .float32: integers = nil
    }
    if let integers {
      return try integers.enumerated().map { index, value in
        guard value >= 0 else {
          throw DatasetError.invalidArchive(path: path, array: name, reason: "label \(value) at index \(index) is negative")
        }
        guard value < Int64(classCount) else {
          throw DatasetError.labelOutOfRange(path: "\(path):\(name)", label: Int(clamping: value), classCount: classCount, index: index)
        }
        return Int(value)
      }
    }
    let values = array.floats
    var result = [Int]()
    result.reserveCapacity(count)
    for (index, value) in values.enumerated() {
      guard value.isFinite, value >= 0, value == value.rounded(), value < Float(classCount) else {
        if value.isFinite, value == value.rounded(), value >= 0 {
          throw DatasetError.labelOutOfRange(path: "\(path):\(name)", label: Int(value), classCount: classCount, index: index)
        }
        throw DatasetError.invalidArchive(path: path, array: name, reason: "label \(value) at index \(index) is not a whole number ≥ 0")
      }
      result.append(Int(value))
    }
    return result
  }
}
