//! The HCM's `access_log` → [`AccessLogConfig`]: Envoy's file logger with a text or JSON
//! format and an optional `status_code_filter`. Unknown command operators are NACKed.

use std::sync::Arc;

use envoy_types::pb::envoy::config::accesslog::v3 as proto;
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, RuntimeUInt32, SubstitutionFormatString, data_source, substitution_format_string,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log,
};
use envoy_types::pb::google::protobuf::value::Kind;
use trellis_xds::telemetry as names;

use super::{ConvertError, Cx, decode_any, join, reject_unsupported};
use crate::access_log::{AccessLogConfig, Comparison, LogFormat, StatusFilter, Template};

/// Converts every access logger of an HCM.
pub(crate) fn access_logs(
    cx: &Cx,
    path: &str,
    logs: &[proto::AccessLog],
) -> Result<Arc<[AccessLogConfig]>, ConvertError> {
    logs.iter()
        .enumerate()
        .map(|(i, l)| access_log(cx, &join(path, &format!("access_log[{i}]")), l))
        .collect()
}

fn access_log(cx: &Cx, path: &str, l: &proto::AccessLog) -> Result<AccessLogConfig, ConvertError> {
    reject_unsupported!(cx, path, l, proto::AccessLog { name, filter, config_type } unsupported {});
    if l.name != names::FILE_ACCESS_LOG {
        return Err(cx.unsupported_value(&join(path, "name"), &l.name));
    }
    let tpath = join(path, "typed_config");
    let Some(proto::access_log::ConfigType::TypedConfig(any)) = &l.config_type else {
        return Err(cx.missing(&tpath));
    };
    let file: FileAccessLog = decode_any(cx, &tpath, any, names::FILE_ACCESS_LOG_TYPE)?;
    reject_unsupported!(cx, &tpath, &file, FileAccessLog { path, access_log_format } unsupported {});
    if file.path.is_empty() {
        return Err(cx.missing(&join(&tpath, "path")));
    }
    let format = match &file.access_log_format {
        Some(file_access_log::AccessLogFormat::LogFormat(f)) => {
            log_format(cx, &join(&tpath, "log_format"), f)?
        }
        Some(_) => {
            return Err(cx.err(
                &tpath,
                "only log_format is supported (format, json_format and typed_json_format are deprecated)",
            ));
        }
        None => {
            return Err(cx.err(
                &join(&tpath, "log_format"),
                "is required (Envoy's default format is not implemented)",
            ));
        }
    };
    let filter = match &l.filter {
        None => None,
        Some(f) => Some(status_filter(cx, &join(path, "filter"), f)?),
    };
    Ok(AccessLogConfig {
        path: Arc::from(file.path.as_str()),
        format,
        filter,
    })
}

fn log_format(
    cx: &Cx,
    path: &str,
    f: &SubstitutionFormatString,
) -> Result<LogFormat, ConvertError> {
    reject_unsupported!(cx, path, f, SubstitutionFormatString { format }
        unsupported { omit_empty_values, content_type, formatters, json_format_options });
    let template = |p: &str, text: &str| Template::parse(text).map_err(|e| cx.err(p, e));
    match &f.format {
        Some(substitution_format_string::Format::TextFormatSource(source)) => {
            let spath = join(path, "text_format_source");
            reject_unsupported!(cx, &spath, source, DataSource { specifier } unsupported { watched_directory });
            match &source.specifier {
                Some(data_source::Specifier::InlineString(text)) => Ok(LogFormat::Text(template(
                    &join(&spath, "inline_string"),
                    text,
                )?)),
                _ => Err(cx.err(&spath, "only inline_string is supported")),
            }
        }
        Some(substitution_format_string::Format::JsonFormat(object)) => {
            let jpath = join(path, "json_format");
            let mut fields = Vec::with_capacity(object.fields.len());
            for (key, value) in &object.fields {
                let kpath = join(&jpath, key);
                let Some(Kind::StringValue(text)) = &value.kind else {
                    return Err(cx.err(&kpath, "only string values are supported"));
                };
                fields.push((key.clone(), template(&kpath, text)?));
            }
            Ok(LogFormat::Json(fields))
        }
        Some(substitution_format_string::Format::TextFormat(_)) => Err(cx.err(
            &join(path, "text_format"),
            "deprecated: use text_format_source.inline_string",
        )),
        None => Err(cx.missing(&join(path, "text_format_source"))),
    }
}

fn status_filter(
    cx: &Cx,
    path: &str,
    f: &proto::AccessLogFilter,
) -> Result<StatusFilter, ConvertError> {
    let Some(proto::access_log_filter::FilterSpecifier::StatusCodeFilter(s)) = &f.filter_specifier
    else {
        return Err(cx.err(path, "only status_code_filter is supported"));
    };
    let spath = join(path, "status_code_filter");
    let c = s
        .comparison
        .as_ref()
        .ok_or_else(|| cx.missing(&join(&spath, "comparison")))?;
    let cpath = join(&spath, "comparison");
    use proto::comparison_filter::Op;
    let op = match Op::try_from(c.op) {
        Ok(Op::Eq) => Comparison::Eq,
        Ok(Op::Ge) => Comparison::Ge,
        Ok(Op::Le) => Comparison::Le,
        _ => return Err(cx.unsupported_value(&join(&cpath, "op"), c.op)),
    };
    let v = c
        .value
        .as_ref()
        .ok_or_else(|| cx.missing(&join(&cpath, "value")))?;
    // Trellis has no runtime: the key is accepted and the default value is the value.
    reject_unsupported!(cx, &join(&cpath, "value"), v, RuntimeUInt32 { default_value, runtime_key } unsupported {});
    Ok(StatusFilter {
        op,
        value: v.default_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{Struct, Value};
    use trellis_xds::to_any;

    fn log(format: SubstitutionFormatString) -> proto::AccessLog {
        proto::AccessLog {
            name: names::FILE_ACCESS_LOG.into(),
            filter: None,
            config_type: Some(proto::access_log::ConfigType::TypedConfig(to_any(
                names::FILE_ACCESS_LOG_TYPE,
                &FileAccessLog {
                    path: "/dev/stdout".into(),
                    access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(format)),
                },
            ))),
        }
    }

    fn text(t: &str) -> SubstitutionFormatString {
        SubstitutionFormatString {
            format: Some(substitution_format_string::Format::TextFormatSource(
                DataSource {
                    specifier: Some(data_source::Specifier::InlineString(t.into())),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn text_json_and_errors() {
        let cx = Cx::new("Listener", "l");
        let ok = access_logs(&cx, "hcm", &[log(text("%RESPONSE_CODE%\n"))]).expect("text");
        assert_eq!(ok[0].path.as_ref(), "/dev/stdout");
        let json = SubstitutionFormatString {
            format: Some(substitution_format_string::Format::JsonFormat(Struct {
                fields: [(
                    "code".to_string(),
                    Value {
                        kind: Some(Kind::StringValue("%RESPONSE_CODE%".into())),
                    },
                )]
                .into(),
            })),
            ..Default::default()
        };
        assert!(matches!(
            access_logs(&cx, "hcm", &[log(json)]).expect("json")[0].format,
            LogFormat::Json(_)
        ));
        let e = access_logs(&cx, "hcm", &[log(text("%BOGUS%"))]).expect_err("bogus");
        assert_eq!(
            e.detail,
            "hcm.access_log[0].typed_config.log_format.text_format_source.inline_string: unsupported command operator %BOGUS%"
        );
        let mut omit = text("x");
        omit.omit_empty_values = true;
        let e = access_logs(&cx, "hcm", &[log(omit)]).expect_err("omit");
        assert!(
            e.detail
                .ends_with("log_format.omit_empty_values: not supported by Trellis")
                || e.detail.contains("omit_empty_values"),
            "{e}"
        );
    }
}
