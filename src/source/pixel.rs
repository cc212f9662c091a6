//! Raw camera frames → images the preprocessor takes (8-bit gray or RGB). One pure function per
//! pixel format; every one checks its buffer and returns [`CaptureError::Convert`] (a corrupt
//! JPEG: [`CaptureError::Decode`], with the decoder's error) rather than panicking or guessing.
//!
//! - MJPEG: each frame is a complete JPEG, decoded with the `image` crate (8-bit gray stays gray,
//!   everything else becomes RGB).
//! - YUYV (4:2:2, `Y0 U Y1 V` per pair of pixels): ITU-R BT.601, limited ("studio") range, see
//!   [`yuyv_to_rgb`] for the exact coefficients and rounding.
//! - GREY / Y8: one byte per pixel, rows possibly padded to a stride.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};

use super::camera::CaptureError;
use crate::config::UvcPixelFormat::{self, Grey, Mjpeg, Yuyv};

fn convert_error(format: UvcPixelFormat, reason: impl Into<String>) -> CaptureError {
    CaptureError::Convert {
        format: format.to_string(),
        reason: reason.into(),
    }
}

/// Decodes one MJPEG frame (a complete JPEG) to an 8-bit gray image (grayscale JPEG) or an RGB
/// image (anything else). Bytes after the end-of-image marker are ignored; a truncated or corrupt
/// JPEG is [`CaptureError::Decode`]. The `image` crate's default allocation limits apply.
pub fn mjpeg_to_image(jpeg: &[u8]) -> Result<DynamicImage, CaptureError> {
    if jpeg.is_empty() {
        return Err(convert_error(Mjpeg, "empty frame"));
    }
    let image = ImageReader::with_format(Cursor::new(jpeg), ImageFormat::Jpeg)
        .decode()
        .map_err(CaptureError::Decode)?;
    Ok(match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => image,
        DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLuma8(image.to_luma8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    })
}

// BT.601 limited range → full-range RGB, coefficients in Q16 fixed point (value · 65536,
// rounded to the nearest integer). With Kr = 0.299, Kb = 0.114:
//   Y scale  255/219                          = 1.164383  → 76309
//   V → R    255/224 · 2(1 − Kr)              = 1.596027  → 104597
//   U → G    255/224 · 2(1 − Kb) · Kb / Kg    = 0.391762  → 25675
//   V → G    255/224 · 2(1 − Kr) · Kr / Kg    = 0.812968  → 53279
//   U → B    255/224 · 2(1 − Kb)              = 2.017232  → 132201
const Q: i32 = 16;
const HALF: i32 = 1 << (Q - 1);
pub(crate) const YUV_Y: i32 = 76309;
pub(crate) const YUV_RV: i32 = 104597;
pub(crate) const YUV_GU: i32 = 25675;
pub(crate) const YUV_GV: i32 = 53279;
pub(crate) const YUV_BU: i32 = 132201;

/// One BT.601 limited-range Y'CbCr sample to RGB:
///
/// ```text
/// R = 1.164383·(Y − 16)                      + 1.596027·(V − 128)
/// G = 1.164383·(Y − 16) − 0.391762·(U − 128) − 0.812968·(V − 128)
/// B = 1.164383·(Y − 16) + 2.017232·(U − 128)
/// ```
///
/// computed in Q16 fixed point (coefficients as above, rounded to the nearest 1/65536), each
/// result rounded half up and clamped to 0..=255. Y = 16 is black, Y = 235 white; values in the
/// foot- and headroom are not clipped before conversion, only the result is clamped.
#[inline]
pub fn yuv601_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16) * YUV_Y + HALF;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| (x >> Q).clamp(0, 255) as u8;
    [
        clamp(c + YUV_RV * e),
        clamp(c - YUV_GU * d - YUV_GV * e),
        clamp(c + YUV_BU * d),
    ]
}

/// Converts a packed YUYV 4:2:2 frame (`Y0 U Y1 V` for each horizontal pair of pixels, no row
/// padding) to RGB with [`yuv601_to_rgb`]; both pixels of a pair share their U and V.
///
/// Errors when the width is odd or zero, the height is zero, or the buffer is not exactly
/// `width · height · 2` bytes.
pub fn yuyv_to_rgb(yuyv: &[u8], width: u32, height: u32) -> Result<RgbImage, CaptureError> {
    if width == 0 || height == 0 {
        return Err(convert_error(
            Yuyv,
            format!("empty frame size {width}x{height}"),
        ));
    }
    if !width.is_multiple_of(2) {
        return Err(convert_error(
            Yuyv,
            format!("width {width} is odd (4:2:2 needs pairs of pixels)"),
        ));
    }
    let expected = width as usize * height as usize * 2;
    if yuyv.len() != expected {
        return Err(convert_error(
            Yuyv,
            format!(
                "{} bytes for {width}x{height} (expected {expected} = width·height·2)",
                yuyv.len()
            ),
        ));
    }
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for quad in yuyv.chunks_exact(4) {
        let [y0, u, y1, v] = [quad[0], quad[1], quad[2], quad[3]];
        rgb.extend_from_slice(&yuv601_to_rgb(y0, u, v));
        rgb.extend_from_slice(&yuv601_to_rgb(y1, u, v));
    }
    RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| convert_error(Yuyv, "internal size mismatch"))
}

/// Copies a GREY / Y8 frame (one byte per pixel) whose rows start `stride` bytes apart
/// (`stride ≥ width`; the padding bytes are dropped) into a gray image.
///
/// The buffer must hold every row: at least `stride · (height − 1) + width` bytes (the last row's
/// padding may be missing) and at most `stride · height`.
pub fn grey_to_luma(
    grey: &[u8],
    width: u32,
    height: u32,
    stride: usize,
) -> Result<GrayImage, CaptureError> {
    if width == 0 || height == 0 {
        return Err(convert_error(
            Grey,
            format!("empty frame size {width}x{height}"),
        ));
    }
    let (w, h) = (width as usize, height as usize);
    if stride < w {
        return Err(convert_error(
            Grey,
            format!("row stride {stride} is smaller than the width {width}"),
        ));
    }
    let min = stride * (h - 1) + w;
    let max = stride * h;
    if grey.len() < min || grey.len() > max {
        return Err(convert_error(
            Grey,
            format!(
                "{} bytes for {width}x{height} with stride {stride} (expected {min}..={max})",
                grey.len()
            ),
        ));
    }
    let pixels = if stride == w {
        grey[..w * h].to_vec()
    } else {
        let mut out = Vec::with_capacity(w * h);
        for row in 0..h {
            out.extend_from_slice(&grey[row * stride..row * stride + w]);
        }
        out
    };
    GrayImage::from_raw(width, height, pixels)
        .ok_or_else(|| convert_error(Grey, "internal size mismatch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::{ExtendedColorType, Luma, Rgb};

    /// The BT.601 limited-range formula in f64 with exact coefficients, rounded to nearest.
    fn reference(y: u8, u: u8, v: u8) -> [u8; 3] {
        let (kr, kb) = (0.299_f64, 0.114_f64);
        let kg = 1.0 - kr - kb;
        let ys = 255.0 / 219.0;
        let cs = 255.0 / 224.0;
        let c = ys * (f64::from(y) - 16.0);
        let d = f64::from(u) - 128.0;
        let e = f64::from(v) - 128.0;
        let r = c + cs * 2.0 * (1.0 - kr) * e;
        let g = c - cs * 2.0 * (1.0 - kb) * kb / kg * d - cs * 2.0 * (1.0 - kr) * kr / kg * e;
        let b = c + cs * 2.0 * (1.0 - kb) * d;
        [r, g, b].map(|x| x.round().clamp(0.0, 255.0) as u8)
    }

    /// Y, U, V of an RGB colour by the forward BT.601 limited-range transform, rounded.
    fn forward(rgb: [u8; 3]) -> [u8; 3] {
        let [r, g, b] = rgb.map(f64::from);
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        [y, u, v].map(|x| x.round() as u8)
    }

    #[test]
    fn fixed_point_coefficients_are_the_rounded_bt601_values() {
        let (kr, kb) = (0.299_f64, 0.114_f64);
        let kg = 1.0 - kr - kb;
        let q = |x: f64| (x * 65536.0).round() as i32;
        assert_eq!(YUV_Y, q(255.0 / 219.0));
        assert_eq!(YUV_RV, q(255.0 / 224.0 * 2.0 * (1.0 - kr)));
        assert_eq!(YUV_GU, q(255.0 / 224.0 * 2.0 * (1.0 - kb) * kb / kg));
        assert_eq!(YUV_GV, q(255.0 / 224.0 * 2.0 * (1.0 - kr) * kr / kg));
        assert_eq!(YUV_BU, q(255.0 / 224.0 * 2.0 * (1.0 - kb)));
    }

    #[test]
    fn yuv_anchor_points_are_exact() {
        assert_eq!(yuv601_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv601_to_rgb(235, 128, 128), [255, 255, 255]);
        // Mid gray: 1.164383 · (126 − 16) = 128.08 → 128.
        assert_eq!(yuv601_to_rgb(126, 128, 128), [128, 128, 128]);
        // Foot- and headroom clamp instead of wrapping.
        assert_eq!(yuv601_to_rgb(0, 128, 128), [0, 0, 0]);
        assert_eq!(yuv601_to_rgb(255, 128, 128), [255, 255, 255]);
        assert_eq!(yuv601_to_rgb(255, 255, 255), reference(255, 255, 255));
    }

    #[test]
    fn pure_colours_round_trip_through_bt601() {
        // The 75 % and 100 % colour bars: RGB → (Y, U, V) by the forward transform → back.
        for rgb in [
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [255, 255, 0],
            [0, 255, 255],
            [255, 0, 255],
            [191, 191, 191],
            [191, 0, 0],
            [0, 191, 0],
            [0, 0, 191],
        ] {
            let [y, u, v] = forward(rgb);
            let back = yuv601_to_rgb(y, u, v);
            assert_eq!(back, reference(y, u, v), "{rgb:?} via {:?}", [y, u, v]);
            for (a, b) in back.iter().zip(rgb) {
                assert!(a.abs_diff(b) <= 2, "{rgb:?} came back as {back:?}");
            }
        }
        // Pure red in BT.601 limited range is (81, 90, 240).
        assert_eq!(forward([255, 0, 0]), [81, 90, 240]);
        assert_eq!(yuv601_to_rgb(81, 90, 240), reference(81, 90, 240));
    }

    #[test]
    fn fixed_point_matches_the_formula_over_the_whole_cube() {
        // Every Y, U and V in steps of 3 (86³ ≈ 636 k samples): at most 1 apart, and almost
        // always identical (differences only where the exact value is within 2⁻¹⁶ of a .5).
        let mut off = 0usize;
        let mut n = 0usize;
        for y in (0..=255u8).step_by(3) {
            for u in (0..=255u8).step_by(3) {
                for v in (0..=255u8).step_by(3) {
                    let got = yuv601_to_rgb(y, u, v);
                    let want = reference(y, u, v);
                    for (a, b) in got.iter().zip(want) {
                        assert!(a.abs_diff(b) <= 1, "Y={y} U={u} V={v}: {got:?} vs {want:?}");
                        off += usize::from(*a != b);
                    }
                    n += 3;
                }
            }
        }
        assert!(
            off * 1000 < n,
            "{off} of {n} channels differ from the f64 formula"
        );
    }

    #[test]
    fn yuyv_frame_converts_pixel_pairs_with_shared_chroma() {
        // 4x2: row 0 = black, white | red pair; row 1 = mid gray pair | blue pair.
        let [ry, ru, rv] = forward([255, 0, 0]);
        let [by, bu, bv] = forward([0, 0, 255]);
        #[rustfmt::skip]
        let buf = [
            16, 128, 235, 128,   ry, ru, ry, rv,
            126, 128, 126, 128,  by, bu, by, bv,
        ];
        let img = yuyv_to_rgb(&buf, 4, 2).unwrap();
        assert_eq!(img.dimensions(), (4, 2));
        assert_eq!(img.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(1, 0), &Rgb([255, 255, 255]));
        assert_eq!(img.get_pixel(2, 0), &Rgb(reference(ry, ru, rv)));
        assert_eq!(img.get_pixel(3, 0), &Rgb(reference(ry, ru, rv)));
        assert_eq!(img.get_pixel(0, 1), &Rgb([128, 128, 128]));
        assert_eq!(img.get_pixel(1, 1), &Rgb([128, 128, 128]));
        assert_eq!(img.get_pixel(2, 1), &Rgb(reference(by, bu, bv)));
        assert_eq!(img.get_pixel(3, 1).0, reference(by, bu, bv));
    }

    #[test]
    fn yuyv_rejects_bad_sizes() {
        let buf = vec![128u8; 4 * 2 * 2];
        assert!(yuyv_to_rgb(&buf, 4, 2).is_ok());
        for (len, w, h) in [
            (15, 4, 2),
            (17, 4, 2),
            (0, 4, 2),
            (12, 3, 2),
            (0, 0, 0),
            (16, 8, 0),
        ] {
            match yuyv_to_rgb(&vec![128u8; len], w, h) {
                Err(CaptureError::Convert { format, .. }) => assert_eq!(format, "YUYV"),
                other => panic!("{len} bytes {w}x{h}: {other:?}"),
            }
        }
    }

    #[test]
    fn grey_copies_rows_and_drops_stride_padding() {
        // 3x2 with stride 5: padding bytes 0xEE must not appear.
        let buf = [1, 2, 3, 0xEE, 0xEE, 4, 5, 6, 0xEE, 0xEE];
        let img = grey_to_luma(&buf, 3, 2, 5).unwrap();
        assert_eq!(img.as_raw(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(img.get_pixel(2, 1), &Luma([6]));
        // The last row's padding may be missing.
        assert_eq!(
            grey_to_luma(&buf[..8], 3, 2, 5).unwrap().as_raw(),
            &[1, 2, 3, 4, 5, 6]
        );
        // Tight rows.
        assert_eq!(
            grey_to_luma(&[9, 8, 7, 6], 2, 2, 2).unwrap().as_raw(),
            &[9, 8, 7, 6]
        );
    }

    #[test]
    fn grey_rejects_bad_sizes() {
        let buf = [0u8; 10];
        for (len, w, h, stride) in [
            (7, 3, 2, 5),
            (11, 3, 2, 5),
            (10, 3, 2, 2),
            (5, 3, 2, 3),
            (0, 0, 1, 1),
            (6, 3, 0, 3),
        ] {
            match grey_to_luma(&vec![0u8; len], w, h, stride) {
                Err(CaptureError::Convert { format, .. }) => assert_eq!(format, "GREY"),
                other => panic!("{len} bytes {w}x{h} stride {stride}: {other:?}"),
            }
        }
        assert!(grey_to_luma(&buf, 3, 2, 5).is_ok());
    }

    fn jpeg(pixels: &[u8], w: u32, h: u32, color: ExtendedColorType) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 95)
            .encode(pixels, w, h, color)
            .unwrap();
        out
    }

    #[test]
    fn mjpeg_decodes_a_known_rgb_image() {
        // 32x16: left 16x16 block flat (200, 40, 90), right block a smooth gradient.
        let (w, h) = (32u32, 16u32);
        let mut src = RgbImage::new(w, h);
        for (x, y, p) in src.enumerate_pixels_mut() {
            *p = if x < 16 {
                Rgb([200, 40, 90])
            } else {
                Rgb([(x * 6) as u8, (y * 12) as u8, 128])
            };
        }
        let bytes = jpeg(src.as_raw(), w, h, ExtendedColorType::Rgb8);
        let img = mjpeg_to_image(&bytes).unwrap();
        let DynamicImage::ImageRgb8(rgb) = img else {
            panic!("expected RGB, got {:?}", img.color())
        };
        assert_eq!(rgb.dimensions(), (w, h));
        // Lossy overall, but close everywhere.
        for (a, b) in rgb.as_raw().iter().zip(src.as_raw()) {
            assert!(a.abs_diff(*b) <= 12, "{a} vs {b}");
        }
        // Inside the flat block (away from the edge, where chroma subsampling blurs) the colour
        // survives within JPEG's colour-conversion rounding.
        for y in 2..14 {
            for x in 2..12 {
                let p = rgb.get_pixel(x, y).0;
                for (a, b) in p.iter().zip([200u8, 40, 90]) {
                    assert!(a.abs_diff(b) <= 2, "({x},{y}) = {p:?}");
                }
            }
        }
    }

    #[test]
    fn mjpeg_flat_gray_is_exact_and_stays_gray() {
        // A flat 8-bit gray JPEG: one DC coefficient per block, no chroma, decodes exactly.
        let (w, h) = (16u32, 8u32);
        let bytes = jpeg(&vec![77u8; (w * h) as usize], w, h, ExtendedColorType::L8);
        let img = mjpeg_to_image(&bytes).unwrap();
        let DynamicImage::ImageLuma8(gray) = img else {
            panic!("expected gray, got {:?}", img.color())
        };
        assert_eq!(gray.dimensions(), (w, h));
        assert!(gray.pixels().all(|p| p.0 == [77]), "{:?}", gray.as_raw());
        // Trailing bytes after EOI (a V4L2 buffer larger than the JPEG) are ignored.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0u8; 100]);
        assert_eq!(mjpeg_to_image(&padded).unwrap().to_luma8(), gray);
    }

    #[test]
    fn mjpeg_rejects_corrupt_data() {
        let bytes = jpeg(&vec![77u8; 16 * 16], 16, 16, ExtendedColorType::L8);
        for bad in [
            &[][..],
            &b"not a jpeg at all"[..],
            &bytes[..bytes.len() / 3],
            &bytes[2..],
        ] {
            match mjpeg_to_image(bad) {
                Err(CaptureError::Convert { format, .. }) => assert_eq!(format, "MJPEG"),
                Err(CaptureError::Decode(_)) if !bad.is_empty() => {}
                other => panic!("{} bytes: {other:?}", bad.len()),
            }
        }
    }
}
