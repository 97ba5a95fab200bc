//! File names: the names uploads are stored under, and which requested names may be read.
//!
//! A stored name is `<safe stem>-<ulid>.<ext>`: the stem keeps a hint of the original name, the
//! lower-case ULID makes it unique, sortable by time and impossible to guess, and the extension
//! comes from the detected type. Temporary uploads start with a dot and are never served.

use ulid::Ulid;

use crate::error::ApiError;
use crate::image_type::ImageType;

/// The longest stem kept from a client's file name.
const MAX_STEM_LEN: usize = 48;

/// Temporary uploads are `.upload-<ulid>.part`: hidden, and recognisable at start-up.
pub const TEMP_PREFIX: &str = ".upload-";
pub const TEMP_SUFFIX: &str = ".part";

/// A new temporary file name.
pub fn temp_name() -> String {
    format!(
        "{TEMP_PREFIX}{}{TEMP_SUFFIX}",
        Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// Whether `name` is one of our temporary uploads.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// The final name of an upload whose client called it `original`.
pub fn stored_name(original: Option<&str>, collection: &str, image_type: ImageType) -> String {
    let stem = original.map(safe_stem).unwrap_or_default();
    let stem = if stem.is_empty() { collection } else { &stem };
    let id = Ulid::new().to_string().to_ascii_lowercase();
    format!("{stem}-{id}.{}", image_type.extension())
}

/// The stem of `original` reduced to lower-case ASCII letters, digits and single dashes.
fn safe_stem(original: &str) -> String {
    // A browser may send a full Windows path; keep its last component only.
    let base = original.rsplit(['/', '\\']).next().unwrap_or(original);
    let base = sanitize_filename::sanitize(base);
    let stem = match base.rsplit_once('.') {
        Some((stem, _ext)) if !stem.is_empty() => stem,
        _ => &base,
    };

    let mut out = String::with_capacity(stem.len().min(MAX_STEM_LEN));
    for c in stem.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= MAX_STEM_LEN {
            break;
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// Checks a file name taken from a request path before it touches the file system.
///
/// SECURITY: only a single, visible path component is accepted, so a request can never name a
/// file outside its collection folder, a hidden file or a temporary upload.
///
/// # Errors
/// 400 for names with separators, NUL or control characters, or too long; 404 for hidden names.
pub fn check_requested_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 255
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(ApiError::InvalidPath);
    }
    if name.starts_with('.') {
        return Err(ApiError::FileNotFound);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_keep_a_safe_stem_and_the_detected_extension() {
        let cases = [
            (Some("IMG_2041.JPG"), "img-2041-"),
            (
                Some("Ibuprofeno 600mg (caja).png"),
                "ibuprofeno-600mg-caja-",
            ),
            (Some("../../etc/passwd"), "passwd-"),
            (Some("C:\\Users\\ana\\foto.jpeg"), "foto-"),
            (Some("..."), "medications-"),
            (Some("ñññ.jpg"), "medications-"),
            (Some(".hidden.jpg"), "hidden-"),
            (None, "medications-"),
        ];
        for (original, prefix) in cases {
            let name = stored_name(original, "medications", ImageType::Png);
            assert!(name.starts_with(prefix), "{original:?} gave {name}");
            assert!(name.ends_with(".png"), "{name}");
            let id = &name[prefix.len()..name.len() - 4];
            assert_eq!(id.len(), 26, "{name}");
            assert!(check_requested_name(&name).is_ok());
        }
    }

    #[test]
    fn stems_are_at_most_48_characters() {
        let long = "a".repeat(300) + ".jpg";
        let name = stored_name(Some(&long), "medications", ImageType::Jpeg);
        assert_eq!(name.split('-').next().unwrap().len(), MAX_STEM_LEN);
    }

    #[test]
    fn two_uploads_of_one_name_get_two_names() {
        let a = stored_name(Some("a.jpg"), "m", ImageType::Jpeg);
        let b = stored_name(Some("a.jpg"), "m", ImageType::Jpeg);
        assert_ne!(a, b);
    }

    #[test]
    fn requested_names_are_one_visible_component() {
        for bad in ["", "a/b", "a\\b", "a\0b", "a\nb", &"x".repeat(256)] {
            assert!(
                matches!(check_requested_name(bad), Err(ApiError::InvalidPath)),
                "{bad:?}"
            );
        }
        for hidden in [".", "..", ".env", ".upload-01h.part"] {
            assert!(
                matches!(check_requested_name(hidden), Err(ApiError::FileNotFound)),
                "{hidden:?}"
            );
        }
        assert!(check_requested_name("medication-123.jpg").is_ok());
    }

    #[test]
    fn temp_names_are_hidden_and_recognised() {
        let name = temp_name();
        assert!(name.starts_with('.'));
        assert!(is_temp_name(&name));
        assert!(!is_temp_name("photo.jpg"));
    }
}
