import Foundation

@testable import QuadraTraining

/// A fresh empty directory under the system temporary directory.
func makeTemporaryDirectory() throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("quadra-training-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

func removeDirectory(_ url: URL) {
  try? FileManager.default.removeItem(at: url)
}
