//! `eval ppl`: perplexity of the loaded model on a text file, and its distance to another model.

use crate::error::SessionError;
use crate::lang::{self, ModelRef};
use crate::session::{output_head, shown_path, CmdResult, Context, LoadedModel, Session};
use std::ops::ControlFlow;
use tritlab_engine::eval::{self, Perplexity, Windows};
use tritlab_engine::{Model, Tokenizer};
use tritlab_workbook::{Output, Table};

/// The id the tokenizer puts before a text, if it adds one (found by encoding a word with and
/// without special tokens, so it works for any tokenizer, whatever its config says).
fn leading_bos(tokenizer: &Tokenizer) -> Result<Option<u32>, SessionError> {
    let with = tokenizer.encode("a", true)?;
    let without = tokenizer.encode("a", false)?;
    Ok(match with.split_first() {
        Some((&first, rest)) if rest.starts_with(&without) && with.len() > without.len() => {
            Some(first)
        }
        _ => None,
    })
}

fn perplexity_row(name: &str, head: &str, p: &Perplexity) -> Vec<String> {
    vec![
        name.to_string(),
        head.to_string(),
        format!("{:.4}", p.perplexity),
        format!("{:.4}", p.std_error),
        format!("{:.5}", p.mean_nll),
    ]
}

impl Session {
    pub(crate) fn eval(&self, e: &lang::Eval, ctx: &mut Context<'_>) -> CmdResult {
        match e {
            lang::Eval::Ppl(p) => self.eval_ppl(p, ctx),
        }
    }

    fn eval_ppl(&self, e: &lang::EvalPpl, ctx: &mut Context<'_>) -> CmdResult {
        let m: &LoadedModel = self.require_model()?;
        let tokenizer = m.require_tokenizer("eval")?;
        let text =
            std::fs::read_to_string(&e.data).map_err(|err| SessionError::io(&e.data, err))?;
        let bos = leading_bos(tokenizer)?;
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend(tokenizer.encode(&text, false)?);
        let ctx_len = e.ctx as usize;
        let max = m.model.config().max_position_embeddings;
        if ctx_len > max {
            return Err(SessionError::Usage(format!(
                "--ctx {ctx_len} is longer than the model's context ({max} positions)"
            )));
        }
        let windows = match e.stride {
            None => Windows::LlamaCpp { ctx: ctx_len },
            Some(stride) => Windows::Sliding {
                ctx: ctx_len,
                stride: stride as usize,
            },
        };
        let mut plan = windows
            .plan(ids.len(), bos)
            .map_err(|err| SessionError::Usage(format!("{}: {err}", e.data.display())))?;
        if let Some(limit) = e.windows {
            plan.truncate(limit as usize);
        }
        let other = match &e.compare {
            None => None,
            Some(model) => {
                let path = self.config.resolve_model(model)?;
                let name = match model {
                    ModelRef::Default => "default".to_string(),
                    ModelRef::Path(p) => shown_path(p),
                };
                Some((name, Model::load_with(&path, output_head(e.compare_head))?))
            }
        };
        let total = plan.len();
        let mut stopped = false;
        let progress = |done: usize, total: usize, ctx: &mut Context<'_>, stopped: &mut bool| {
            ctx.progress("eval ppl: windows", done as u64, Some(total as u64));
            if ctx.cancelled() {
                *stopped = true;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let head = m.model.output_head().to_string();
        let mut rows = Vec::new();
        let mut outputs = Vec::new();
        let scored;
        match &other {
            None => {
                let p = eval::perplexity(&m.model, &ids, &plan, |d, t| {
                    progress(d, t, ctx, &mut stopped)
                })?;
                scored = (p.windows, p.tokens);
                rows.push(perplexity_row(&m.shown, &head, &p));
            }
            Some((name, model)) => {
                let (p, c) = eval::compare(model, &m.model, &ids, &plan, |d, t| {
                    progress(d, t, ctx, &mut stopped)
                })?;
                scored = (p.windows, p.tokens);
                rows.push(perplexity_row(&m.shown, &head, &c.other));
                rows.push(perplexity_row(name, &model.output_head().to_string(), &p));
                outputs.push(Output::Table(Table {
                    title: Some(format!(
                        "{} against {name} ({}) on the same predictions",
                        m.shown,
                        model.output_head()
                    )),
                    columns: ["mean KL divergence", "±", "max KL", "top-1 agreement"]
                        .map(String::from)
                        .to_vec(),
                    rows: vec![vec![
                        format!("{:.6}", c.mean_kl),
                        format!("{:.6}", c.kl_std_error),
                        format!("{:.4}", c.max_kl),
                        format!("{:.2}%", 100.0 * c.top1_agreement),
                    ]],
                }));
            }
        }
        let convention = match windows {
            Windows::LlamaCpp { ctx } => {
                format!("llama-perplexity windows of {ctx} tokens, second halves scored")
            }
            Windows::Sliding { ctx, stride } => {
                format!("sliding windows of {ctx} tokens every {stride}")
            }
        };
        let mut title = format!(
            "perplexity on {} ({} tokens): {convention}; {} of {total} windows, {} predictions",
            e.data.display(),
            ids.len(),
            scored.0,
            scored.1
        );
        if stopped {
            title.push_str(" (cancelled early)");
        }
        outputs.insert(
            0,
            Output::Table(Table {
                title: Some(title),
                columns: ["model", "head", "perplexity", "±", "mean NLL"]
                    .map(String::from)
                    .to_vec(),
                rows,
            }),
        );
        Ok(outputs)
    }
}
