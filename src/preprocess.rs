//! Image → model input tensor, exactly as the model's metadata contract says.
//!
//! `decode` (bytes → image) and [`Preprocessor::tensor`] (image → NCHW `f32`) are the one
//! implementation shared by `run`, `replay` and `enroll`; the Python evaluation in `models/`
//! implements the same steps, so embeddings agree to 1e-4:
//!
//! 1. convert to the model's channels (8-bit grayscale by ITU-R 601-2 luma, as Pillow's
//!    `convert("L")`, or 8-bit RGB),
//! 2. multiply by `pixel_scale` in `f32`,
//! 3. resize to the input size with the contract's filter (`fast_image_resize`, `f32` pixels,
//!    no intermediate rounding; `box` on an integer factor is the exact block mean),
//! 4. `(x − mean[c]) / std[c]`, written channel-major (NCHW, batch of one).

use std::io::Cursor;

use fast_image_resize as fir;
use image::{DynamicImage, ImageReader};

use crate::contract::{ModelContract, ResizeFilter};

/// Why a frame could not become a tensor; each becomes an `error` verdict.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("empty image data (0 bytes)")]
    Empty,
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error(
        "image is {width}x{height} pixels, larger than the limit of {max_width}x{max_height} (runtime.max_image_width, max_image_height)"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error("image has no pixels ({width}x{height})")]
    NoPixels { width: u32, height: u32 },
    #[error("cannot resize image: {0}")]
    Resize(String),
}

/// Largest decoded image accepted (bytes of pixel data); guards against decompression bombs.
pub const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

/// Scratch memory a [`Preprocessor`] keeps between frames (`f32` values, 16 MiB: a 2048x2048
/// gray frame); a bigger frame's buffers are released after it, so one huge frame does not
/// leave every worker holding its size.
const RETAINED_SCRATCH: usize = 4 << 20;

/// The largest image accepted, in pixels (`[runtime] max_image_width`, `max_image_height`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_width: crate::config::defaults::MAX_IMAGE_WIDTH,
            max_height: crate::config::defaults::MAX_IMAGE_HEIGHT,
        }
    }
}

impl ImageLimits {
    fn check(&self, width: u32, height: u32) -> Result<(), PreprocessError> {
        if width > self.max_width || height > self.max_height {
            return Err(PreprocessError::TooLarge {
                width,
                height,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        Ok(())
    }
}

/// A decoder's message as one line (some end with a newline).
fn decode_error(e: image::ImageError) -> PreprocessError {
    PreprocessError::Decode(e.to_string().trim().to_string())
}

/// Decodes an encoded image (PNG, JPEG, BMP, TIFF, PNM), guessing the format from its content,
/// within the default [`ImageLimits`].
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, PreprocessError> {
    decode_within(bytes, ImageLimits::default())
}

/// [`decode`] within `limits`: the dimensions are read from the header first, so an image
/// beyond them is refused before any pixel memory is allocated.
pub fn decode_within(bytes: &[u8], limits: ImageLimits) -> Result<DynamicImage, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| PreprocessError::Decode(e.to_string().trim().to_string()))
    };
    let (width, height) = reader()?.into_dimensions().map_err(decode_error)?;
    limits.check(width, height)?;
    let mut reader = reader()?;
    let mut alloc = image::Limits::default();
    alloc.max_alloc = Some(MAX_DECODED_BYTES);
    alloc.max_image_width = Some(limits.max_width);
    alloc.max_image_height = Some(limits.max_height);
    reader.limits(alloc);
    reader.decode().map_err(decode_error)
}

/// Turns images into input tensors; owns its scratch buffers, so one per worker.
pub struct Preprocessor {
    contract: ModelContract,
    limits: ImageLimits,
    resizer: fir::Resizer,
    options: fir::ResizeOptions,
    scaled: Vec<f32>,
    resized: Vec<f32>,
}

impl Preprocessor {
    pub fn new(contract: ModelContract) -> Self {
        let filter = match contract.resize {
            ResizeFilter::Box => fir::FilterType::Box,
            ResizeFilter::Bilinear => fir::FilterType::Bilinear,
            ResizeFilter::Hamming => fir::FilterType::Hamming,
            ResizeFilter::CatmullRom => fir::FilterType::CatmullRom,
            ResizeFilter::Mitchell => fir::FilterType::Mitchell,
            ResizeFilter::Gaussian => fir::FilterType::Gaussian,
            ResizeFilter::Lanczos3 => fir::FilterType::Lanczos3,
        };
        let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(filter));
        let resized = vec![0.0; contract.input_len()];
        Self {
            contract,
            limits: ImageLimits::default(),
            resizer: fir::Resizer::new(),
            options,
            scaled: Vec::new(),
            resized,
        }
    }

    /// The largest image [`Preprocessor::decode`] and [`Preprocessor::tensor`] accept.
    pub fn with_limits(mut self, limits: ImageLimits) -> Self {
        self.limits = limits;
        self
    }

    /// [`decode`] within this preprocessor's limits.
    pub fn decode(&self, bytes: &[u8]) -> Result<DynamicImage, PreprocessError> {
        decode_within(bytes, self.limits)
    }

    /// Writes the NCHW tensor of `image` into `out` (resized to C·H·W values). Scratch buffers
    /// grown beyond what is kept between frames are released afterwards.
    pub fn tensor(
        &mut self,
        image: &DynamicImage,
        out: &mut Vec<f32>,
    ) -> Result<(), PreprocessError> {
        let (width, height) = (image.width(), image.height());
        if width == 0 || height == 0 {
            return Err(PreprocessError::NoPixels { width, height });
        }
        self.limits.check(width, height)?;
        let result = self.tensor_of(image, out);
        if self.scaled.capacity() > RETAINED_SCRATCH {
            self.scaled = Vec::new();
        }
        if self.resizer.size_of_internal_buffers() > RETAINED_SCRATCH * 4 {
            self.resizer.reset_internal_buffers();
        }
        result
    }

    /// The scratch memory kept now (bytes).
    pub fn scratch_bytes(&self) -> usize {
        self.scaled.capacity() * 4 + self.resizer.size_of_internal_buffers()
    }

    fn tensor_of(
        &mut self,
        image: &DynamicImage,
        out: &mut Vec<f32>,
    ) -> Result<(), PreprocessError> {
        let (width, height) = (image.width(), image.height());
        let c = self.contract.channels as usize;
        let scale = self.contract.pixel_scale;
        self.scaled.clear();
        if c == 1 {
            match image {
                DynamicImage::ImageLuma8(g) => self
                    .scaled
                    .extend(g.as_raw().iter().map(|&p| f32::from(p) * scale)),
                DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageLumaA16(_) => self.scaled.extend(
                    image
                        .to_luma8()
                        .as_raw()
                        .iter()
                        .map(|&p| f32::from(p) * scale),
                ),
                other => self.scaled.extend(
                    other
                        .to_rgb8()
                        .as_raw()
                        .chunks_exact(3)
                        .map(|p| f32::from(luma_601(p)) * scale),
                ),
            }
        } else {
            match image {
                DynamicImage::ImageRgb8(rgb) => self
                    .scaled
                    .extend(rgb.as_raw().iter().map(|&p| f32::from(p) * scale)),
                other => self.scaled.extend(
                    other
                        .to_rgb8()
                        .as_raw()
                        .iter()
                        .map(|&p| f32::from(p) * scale),
                ),
            }
        }

        let pixel_type = if c == 1 {
            fir::PixelType::F32
        } else {
            fir::PixelType::F32x3
        };
        let (w, h) = (self.contract.width, self.contract.height);
        if (width, height) == (w, h) {
            self.resized.copy_from_slice(&self.scaled);
        } else {
            let src = fir::images::ImageRef::new(
                width,
                height,
                bytemuck::cast_slice(&self.scaled),
                pixel_type,
            )
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
            let mut dst = fir::images::Image::from_slice_u8(
                w,
                h,
                bytemuck::cast_slice_mut(&mut self.resized),
                pixel_type,
            )
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
            self.resizer
                .resize(&src, &mut dst, &self.options)
                .map_err(|e| PreprocessError::Resize(e.to_string()))?;
        }

        let plane = (w * h) as usize;
        out.clear();
        out.resize(c * plane, 0.0);
        for ch in 0..c {
            let (mean, std) = (self.contract.mean[ch], self.contract.std[ch]);
            let dst = &mut out[ch * plane..(ch + 1) * plane];
            for (i, v) in dst.iter_mut().enumerate() {
                *v = (self.resized[i * c + ch] - mean) / std;
            }
        }
        Ok(())
    }
}

/// 8-bit luma of an RGB pixel by ITU-R 601-2, in Pillow's fixed-point form (`convert("L")`),
/// so colour frames become the same gray values as in the Python training and evaluation.
pub fn luma_601(rgb: &[u8]) -> u8 {
    let [r, g, b] = [rgb[0], rgb[1], rgb[2]].map(u32::from);
    ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    fn contract(w: u32, h: u32, channels: u32) -> ModelContract {
        ModelContract {
            width: w,
            height: h,
            channels,
            resize: ResizeFilter::Box,
            pixel_scale: 1.0 / 255.0,
            mean: vec![0.5; channels as usize],
            std: vec![0.25; channels as usize],
            embedding_dim: 4,
            name: "t".into(),
            version: "1".into(),
            split_sha256: None,
        }
    }

    #[test]
    fn box_downscale_by_two_is_the_block_mean() {
        // 4x4 image, distinct values; 2x2 output = mean of each 2x2 block.
        let img = GrayImage::from_fn(4, 4, |x, y| Luma([(10 * y + x) as u8 * 5]));
        let mut p = Preprocessor::new(contract(2, 2, 1));
        let mut out = Vec::new();
        p.tensor(&DynamicImage::ImageLuma8(img.clone()), &mut out)
            .unwrap();
        for by in 0..2u32 {
            for bx in 0..2u32 {
                let mut sum = 0.0f32;
                for dy in 0..2 {
                    for dx in 0..2 {
                        sum += f32::from(img.get_pixel(2 * bx + dx, 2 * by + dy)[0]) / 255.0;
                    }
                }
                let want = (sum / 4.0 - 0.5) / 0.25;
                let got = out[(by * 2 + bx) as usize];
                assert!(
                    (got - want).abs() < 1e-6,
                    "block ({bx},{by}): {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rgb_is_written_channel_major() {
        let img = RgbImage::from_pixel(2, 2, Rgb([255, 0, 51]));
        let mut p = Preprocessor::new(contract(2, 2, 3));
        let mut out = Vec::new();
        p.tensor(&DynamicImage::ImageRgb8(img), &mut out).unwrap();
        assert_eq!(out.len(), 12);
        assert!(out[..4].iter().all(|v| (v - 2.0).abs() < 1e-6));
        assert!(out[4..8].iter().all(|v| (v + 2.0).abs() < 1e-6));
        assert!(out[8..].iter().all(|v| (v + 1.2).abs() < 1e-5));
    }

    #[test]
    fn color_image_becomes_gray_for_a_gray_model() {
        let img = RgbImage::from_pixel(3, 3, Rgb([200, 200, 200]));
        let mut p = Preprocessor::new(contract(3, 3, 1));
        let mut out = Vec::new();
        p.tensor(&DynamicImage::ImageRgb8(img), &mut out).unwrap();
        let want = (200.0 / 255.0 - 0.5) / 0.25;
        assert!(out.iter().all(|v| (v - want).abs() < 1e-5), "{out:?}");
    }

    #[test]
    fn colour_to_gray_matches_pillow() {
        // Values from Pillow 13.0: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0))
        assert_eq!(luma_601(&[255, 0, 0]), 76);
        assert_eq!(luma_601(&[0, 255, 0]), 150);
        assert_eq!(luma_601(&[0, 0, 255]), 29);
        assert_eq!(luma_601(&[255, 255, 255]), 255);
        assert_eq!(luma_601(&[10, 200, 30]), 124);
    }

    #[test]
    fn images_beyond_the_limits_are_refused_and_big_scratch_is_released() {
        let limits = ImageLimits {
            max_width: 3000,
            max_height: 2000,
        };
        let mut png = Vec::new();
        DynamicImage::ImageLuma8(GrayImage::new(3001, 8))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        match decode_within(&png, limits) {
            Err(e @ PreprocessError::TooLarge { width: 3001, .. }) => assert!(
                e.to_string()
                    .starts_with("image is 3001x8 pixels, larger than the limit of 3000x2000"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        let mut p = Preprocessor::new(contract(4, 4, 1)).with_limits(limits);
        let mut out = Vec::new();
        let big = DynamicImage::ImageLuma8(GrayImage::new(3000, 2000));
        p.tensor(&big, &mut out).unwrap();
        assert!(
            p.scratch_bytes() <= RETAINED_SCRATCH * 4,
            "{} bytes kept",
            p.scratch_bytes()
        );
        let tall = DynamicImage::ImageLuma8(GrayImage::new(8, 2001));
        assert!(matches!(
            p.tensor(&tall, &mut out),
            Err(PreprocessError::TooLarge { height: 2001, .. })
        ));
        let small = DynamicImage::ImageLuma8(GrayImage::new(64, 64));
        p.tensor(&small, &mut out).unwrap();
        assert!(p.scratch_bytes() > 0, "small frames keep their scratch");
    }

    #[test]
    fn decoder_messages_are_one_line() {
        // a JPEG cut off after its start marker: the decoder's I/O message ends with a newline
        for jpeg in [&[0xff, 0xd8, 0xff][..], &[0xff, 0xd8, 0xff, 0xe0, 0x00]] {
            let e = decode(jpeg).unwrap_err();
            let text = crate::error::chain(&e);
            assert!(text.starts_with("cannot decode image: "), "{text:?}");
            assert!(!text.contains('\n') && text == text.trim(), "{text:?}");
        }
    }

    #[test]
    fn empty_and_corrupt_bytes_are_errors() {
        assert!(matches!(decode(&[]), Err(PreprocessError::Empty)));
        let mut png = Vec::new();
        DynamicImage::ImageLuma8(GrayImage::new(8, 8))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png.truncate(png.len() / 2);
        assert!(matches!(decode(&png), Err(PreprocessError::Decode(_))));
        assert!(matches!(
            decode(b"not an image at all"),
            Err(PreprocessError::Decode(_))
        ));
    }
}
