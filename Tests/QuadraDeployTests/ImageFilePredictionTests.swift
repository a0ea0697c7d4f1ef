import Foundation
import QuadraData
import QuadraDeploy
import QuadraModels
import QuadraTraining
import Testing

/// `predict` on PNG/JPEG files: decoded, channel-matched and, when the checkpoint records a training
/// resolution, resized and centre-cropped as evaluation does.
@Suite("Prediction from image files")
struct ImageFilePredictionTests {
  /// The PNG fixtures of the decoder tests (13 × 11; gray and RGB, 8-bit).
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("QuadraDataTests/Fixtures")

  @Test("a gray PNG is read at its own size with its decoded pixels, or resized to the recorded resolution")
  func grayPNG() throws {
    let url = Self.fixtures.appendingPathComponent("png_c0_d8_plain.png")
    let decoded = try ImageDecoding.decode(contentsOf: url)
    let deployable = try TestModels.deployable(TestModels.quadratic)
    let input = try ImageInput.read(url, for: deployable)
    #expect(input.shape == [1, decoded.height, decoded.width, 1])
    #expect(input.pixels == decoded.pixels.map(Float.init))
    // The predictor accepts it (13 × 11 is above the model's minimum size).
    let logits = try Predictor(deployable).logits(input)
    #expect(logits.shape == [1, 10])

    var checkpoint = deployable.checkpoint
    checkpoint.dataOptions = DataOptions(resolution: 8)
    let resized = try ImageInput.read(url, for: try DeployableModel(checkpoint: checkpoint))
    #expect(resized.shape == [1, 8, 8, 1])
    let expected = ImageResizing.resizeAndCenterCrop(decoded, shorterSide: Int(8 / 0.875), crop: 8)
    #expect(resized.pixels == expected.pixels.map(Float.init))
  }

  @Test("an RGB PNG for a 1-channel model, and a corrupt PNG, are errors naming the file")
  func badImages() throws {
    let deployable = try TestModels.deployable(TestModels.quadratic)
    let rgb = Self.fixtures.appendingPathComponent("png_c2_d8_plain.png")
    let rgbMessage = errorMessage { _ = try ImageInput.read(rgb, for: deployable) }
    #expect(rgbMessage?.contains(rgb.path) == true && rgbMessage?.contains("RGB") == true, "\(rgbMessage ?? "no error")")
    let corrupt = Self.fixtures.appendingPathComponent("bad_crc.png")
    let corruptMessage = errorMessage { _ = try ImageInput.read(corrupt, for: deployable) }
    #expect(corruptMessage?.contains(corrupt.path) == true, "\(corruptMessage ?? "no error")")
    // Named once: the decoder's error already carries the path.
    #expect(corruptMessage?.components(separatedBy: corrupt.path).count == 2, "\(corruptMessage ?? "no error")")
  }
}
